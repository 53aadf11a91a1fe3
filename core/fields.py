"""Settings defined once: each field's default, one-line doc and allowed values, next to the code
that owns it (the model's in lm/model/settings.py, the data's in data/settings.py, each
optimizer's in optim/hparams/, the loop's and the mesh's in lm/train/settings.py).

    MODEL = Section("model", "the transformer's architecture", dict(
        d_model=Field(128, "model width", minimum=1),
        norm=Field("rmsnorm", "rmsnorm | layernorm", choices=("rmsnorm", "layernorm")),
    ))
    MODEL.config_dict()          # the ml_collections.ConfigDict of the defaults
    MODEL.check(config.model)    # ValueError naming the field, its value and what is allowed
    MODEL.rows()                 # (dotted name, default, doc) for `python -m configs.help`

Everything a user-facing config holds is built from these definitions; the same definitions give
an optimizer transform its keyword defaults (`Section.defaults_of`) and the study its search
spaces (`Field.grid`). This module imports nothing of the project and no JAX.
"""
import dataclasses
import functools
import inspect
import math
from typing import Any, Callable

import ml_collections


@dataclasses.dataclass(frozen=True)
class Field:
    """One setting.

    Args:
      default: its value when nothing sets it; its type is the field's type (a dict default
        makes a free-form field, set from the command line as a JSON object).
      doc: one line: what it does, its unit, what 0 or "" mean.
      choices: the allowed values, if a closed set.
      minimum, maximum: inclusive bounds of a number.
      above, below: exclusive bounds of a number (a scale: above=0; a decay rate: below=1).
      grid: the study's ordered search grid (optimizer hyperparameters), empty: not searched.
      start: the study's start value when it is not the default.
    """
    default: Any
    doc: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    grid: tuple = ()
    start: Any = None

    def problem(self, value) -> str:
        """Why `value` is not allowed ("" when it is)."""
        if self.choices and value not in self.choices:
            return f"is not one of {', '.join(map(str, self.choices))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ""
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum}"
        if self.above is not None and not value > self.above:
            return f"must be > {self.above}"
        if self.below is not None and not value < self.below:
            return f"must be < {self.below}"
        return ""

    @property
    def search_start(self):
        return self.default if self.start is None else self.start


# Shorthands for the constraints settings share.
def unit_interval(default: float, doc: str, **kwargs) -> Field:
    """A decay rate or momentum: in [0, 1)."""
    return Field(default, doc, minimum=0.0, below=1.0, **kwargs)


def positive(default, doc: str, **kwargs) -> Field:
    """A count (>= 1) or a scale (> 0)."""
    bound = dict(minimum=1) if isinstance(default, int) else dict(above=0.0)
    return Field(default, doc, **bound, **kwargs)


def nonnegative(default, doc: str, **kwargs) -> Field:
    return Field(default, doc, minimum=0, **kwargs)


@dataclasses.dataclass(frozen=True)
class Section:
    """A named group of fields (and nested sections), e.g. `model` or `optimizer.soap`.

    Args:
      name: its dotted path in a run config ("model", "optimizer.soap").
      doc: one line on what the section configures.
      fields: name -> Field or Section, in the order configs.help lists them.
      rules: cross-field checks, each a function of the section's values returning a problem
        message ("" or None when fine).
      search: the study's grids of keys that are not fields of the section (an optimizer's
        `lr`, `warmup`, `grad_clip`): key -> (ordered grid, start value).
      search_with_lr: fields the study searches jointly with the lr (a line search), as
        Simplified-AdEMAMix's alpha, whose best lr moves with it.
    """
    name: str
    doc: str
    fields: dict
    rules: tuple = ()
    search: dict = dataclasses.field(default_factory=dict)
    search_with_lr: tuple = ()

    def __getitem__(self, key: str):
        return self.fields[key]

    def config_dict(self) -> ml_collections.ConfigDict:
        """The section's defaults as a ConfigDict (a dict default stays a free-form field)."""
        values = {}
        for key, field in self.fields.items():
            if isinstance(field, Section):
                values[key] = field.config_dict()
            elif isinstance(field.default, dict):
                values[key] = ml_collections.FieldReference(dict(field.default),
                                                            field_type=object)
            else:
                values[key] = field.default
        return ml_collections.ConfigDict(values)

    def check(self, values) -> None:
        """Raises ValueError naming `<section>.<field>=<value>` and what is allowed, for the
        first field (nested sections included) that breaks its constraints or a rule."""
        for key, field in self.fields.items():
            if key not in values:
                continue
            if isinstance(field, Section):
                field.check(values[key])
                continue
            problem = field.problem(values[key])
            if problem:
                raise ValueError(f"{self.name}.{key}={values[key]!r} {problem} ({field.doc})")
        for rule in self.rules:
            problem = rule(values)
            if problem:
                raise ValueError(problem)

    def rows(self, prefix: str | None = None) -> list[tuple[str, Any, str]]:
        """(dotted name, default, doc) of every field, nested sections included."""
        prefix = self.name if prefix is None else prefix
        found = []
        for key, field in self.fields.items():
            name = f"{prefix}.{key}"
            if isinstance(field, Section):
                found += field.rows(name)
            else:
                found.append((name, field.default, field.doc))
        return found

    def values(self, config, exclude: tuple = ()) -> dict:
        """name -> value of the section's own fields in `config` (a ConfigDict or a dict)."""
        return {key: config[key] for key in self.fields
                if isinstance(self.fields[key], Field) and key not in exclude}

    def search_space(self) -> dict:
        """The study's search space: {"grids": key -> ordered grid, "start": key -> start value,
        "line": keys searched jointly with the lr}, from the fields' grids and `search`."""
        grids = {key: list(grid) for key, (grid, _) in self.search.items()}
        start = {key: value for key, (_, value) in self.search.items()}
        for key, field in self.fields.items():
            if isinstance(field, Field) and field.grid:
                grids[key], start[key] = list(field.grid), field.search_start
        return dict(grids=grids, start=start, line=list(self.search_with_lr))

    def defaults_of(self, exclude: tuple = ()) -> Callable:
        """Decorator: the function's keyword arguments named like the section's fields take
        their defaults from the definitions (the function checks their values), so that a
        transform's signature, its config section and `configs.help` read one definition. The
        function declares those arguments keyword-only without defaults (`def scale_by_x(*,
        b1, b2, stacked=None)`) or collects them in **kwargs and passes them on.

        `exclude` names fields of the section the function does not take (e.g. a config-only
        multiplier)."""
        own = {key: field for key, field in self.fields.items()
               if isinstance(field, Field) and key not in exclude}

        def decorator(fn: Callable) -> Callable:
            signature = inspect.signature(fn)
            params = signature.parameters
            takes_rest = any(p.kind is p.VAR_KEYWORD for p in params.values())
            missing = [key for key, p in params.items()
                       if p.kind is p.KEYWORD_ONLY and p.default is p.empty and key not in own]
            absent = [] if takes_rest else [key for key in own if key not in params]
            if missing or absent:
                raise TypeError(f"{fn.__qualname__} and the definitions of {self.name} differ: "
                                f"not defined {missing}, not taken {absent}")
            defaults = {key: field.default for key, field in own.items()}

            @functools.wraps(fn)
            def with_defaults(*args, **kwargs):
                return fn(*args, **{**defaults, **kwargs})

            shown = [p.replace(default=own[key].default) if key in own else p
                     for key, p in params.items() if p.kind is not p.VAR_KEYWORD]
            shown += [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY,
                                        default=field.default)
                      for key, field in own.items() if key not in params]
            kinds = sorted(shown, key=lambda p: p.kind)  # keyword-only after the rest
            with_defaults.__signature__ = signature.replace(parameters=kinds)
            return with_defaults

        return decorator
