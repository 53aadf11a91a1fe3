"""What a sweep is: a base config, the points to run (axis -> value) and per-run rules.

A sweep file, configs/sweeps/NAME.py, defines `get_sweep()` returning a `Sweep`:

    def get_sweep():
        return Sweep(quickstart.get_config(),
                     product(lr_grid({"adamw": [1e-3, 3e-3], "soap": [1e-3, 3e-3]}),
                             size=["d64_l2", "d128_l4"]),
                     rules=(tokens_per_param(20), warmup_fraction(0.1)))

Points are dicts. `product` crosses lists of points and axes, `zip_axes` pairs axes value by
value, `lr_grid` gives each optimizer its own learning rates, and `+` joins lists. A key is a
shorthand of AXES (size, dataset, batch_size, precision, optimizer, lr, seed, steps, warmup,
grad_clip), a hyperparameter of the run's own optimizer by its bare name (`b2`,
`weight_decay`, `alpha`: config.optimizer.<its name>.<key>), or any dotted config field
(`optimizer.soap.precondition_frequency`). `expand` applies each point to a
copy of the base config (shorthands first, in AXES order, then dotted fields), then the rules
in order, checks every run config and names each run from the keys that vary across the sweep:
`size=d64_l2,optimizer=adamw,lr=0.003`, which is also its workdir.
"""
import copy
import dataclasses
import itertools
import re
from typing import Callable

import ml_collections

import optim
from data import needs, sources
from lm.errors import ConfigError, SweepError
from lm.model import ModelConfig, ladder
from lm.model.info import model_info
from lm.model.mx_presets import precision_fields
from lm.model.settings import DTYPES
from lm.train.build import planned_vocab_size
from lm.train.config_checks import check_config
from lm.train.settings import run_config

# Shorthand -> the config field it sets; "size" and "precision" set several (see _apply).
AXES = {"size": None, "dataset": "data.corpus", "batch_size": "train.batch_size",
        "precision": None, "optimizer": "optimizer.name", "lr": "optimizer.lr",
        "seed": "train.seed", "steps": "train.steps", "warmup": "schedule.warmup_fraction",
        "grad_clip": "optimizer.grad_clip"}
_SHORTHAND_OF_FIELD = {field: name for name, field in AXES.items() if field}

Rule = Callable[[ml_collections.ConfigDict], None]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Every run starts from a copy of `base`, takes one point's values, then `rules`. Run
    names hold the keys that vary, and those of `always_named` even while they do not (so that
    names stay the same when a sweep later grows along that axis)."""
    base: ml_collections.ConfigDict
    points: list
    rules: tuple = ()
    always_named: tuple = ()


@dataclasses.dataclass(frozen=True)
class Run:
    name: str            # the workdir name, from the keys that vary across the sweep
    overrides: dict      # the point: shorthand or dotted field -> value
    config: ml_collections.ConfigDict


def product(*point_lists: list, **axes: list) -> list[dict]:
    """Every combination of one point from each list and one value of each axis."""
    factors = [_nonempty(points, "a list given to product()") for points in point_lists]
    factors += [[{key: v} for v in _nonempty(values, f"axis {key!r}")]
                for key, values in axes.items()]
    combined = []
    for parts in itertools.product(*factors):
        point = {}
        for part in parts:
            twice = point.keys() & part.keys()
            if twice:
                raise SweepError(f"product() sets {', '.join(sorted(twice))} twice; each key "
                                 "may come from one factor only")
            point.update(part)
        combined.append(point)
    return combined


def zip_axes(**axes: list) -> list[dict]:
    """Points pairing the axes' values index by index: zip_axes(size=[a, b], lr=[x, y]) gives
    {size: a, lr: x} and {size: b, lr: y}. Dotted keys: zip_axes(**{"train.seed": [...]})."""
    lengths = {key: len(_nonempty(values, f"axis {key!r}")) for key, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise SweepError(f"zip_axes() needs axes of one length; got {lengths}")
    return [dict(zip(axes, values)) for values in zip(*axes.values())]


def lr_grid(grids: dict) -> list[dict]:
    """{optimizer name: [learning rates]} -> one point per (optimizer, lr): each optimizer is
    tuned on its own grid, as optimizers differ in their lr scale."""
    return [{"optimizer": name, "lr": lr}
            for name, lrs in _nonempty(grids, "lr_grid()").items()
            for lr in _nonempty(lrs, f"the lr grid of {name!r}")]


def tokens_per_param(k: float, params: str = "non_embedding") -> Rule:
    """Rule: train on k tokens per parameter (`params`: non_embedding or total), i.e.
    train.steps = round(k N / (batch_size seq_len)). Chinchilla's optimum is about 20 per
    total parameter (Hoffmann et al. 2022); Kaplan et al. 2020 count non-embedding ones."""
    if params not in ("non_embedding", "total"):
        raise SweepError(f"tokens_per_param(params={params!r}): use non_embedding or total")

    def rule(config):
        n = run_model_info(config)[f"params/{params}"]
        config.train.steps = max(1, round(k * n / (config.train.batch_size
                                                   * config.data.seq_len)))
    return rule


def warmup_fraction(fraction: float) -> Rule:
    """Rule: schedule.warmup_steps = fraction x train.steps (at least 1); put it after the
    rule that sets the steps."""
    if not 0 <= fraction < 1:
        raise SweepError(f"warmup_fraction({fraction}) must lie in [0, 1)")

    def rule(config):
        config.schedule.warmup_steps = max(1, round(fraction * config.train.steps))
    return rule


def evaluations(count: int, checkpoints: int = 2) -> Rule:
    """Rule: validate `count` times and checkpoint `checkpoints` times over train.steps (learning
    curves of equal shape at every budget); put it after the rule that sets the steps."""
    if count < 1 or checkpoints < 1:
        raise SweepError(f"evaluations({count}, {checkpoints}): both counts must be at least 1")

    def rule(config):
        steps = config.train.steps
        config.train.eval_every = max(1, steps // count)
        config.train.checkpoint_every = max(1, steps // checkpoints)
    return rule


def run_length(*fields: str) -> Rule:
    """Rule: set each dotted field to train.steps, for schedules meant to span the whole run
    (AdEMAMix's b3 and alpha warmups, Pagliardini et al. 2024, use T = the run's length); put
    it after the rule that sets the steps."""
    def rule(config):
        for field in fields:
            _set_field(config, field, config.train.steps, "(every run)")
    return rule


def run_model_info(config) -> dict:
    """Parameter counts and FLOPs per token of a run config's model, without loading data:
    the vocabulary is the tokenizer's (the byte tokenizer's, or data.vocab_size for BPE)."""
    return model_info(ModelConfig.for_run(config, planned_vocab_size(config)),
                      config.data.seq_len)


def expand(sweep: Sweep) -> list[Run]:
    """The named, checked run configs of `sweep`; SweepError names the first problem."""
    points = _nonempty(sweep.points, "the sweep's point list")
    points = [{_canonical(key): value for key, value in point.items()} for point in points]
    varied, always = varied_keys(points), {_canonical(key) for key in sweep.always_named}
    named = [key for key in ordered_keys(points) if key in varied or key in always]
    names = [run_name(point, named) for point in points]
    _refuse_collisions(names, points)
    runs = []
    for name, point in zip(names, points):
        config = copy.deepcopy(sweep.base)
        for key in ordered_keys(point):
            _apply(config, key, point[key], name)
        for rule in sweep.rules:
            rule(config)
        _check(config, name)
        runs.append(Run(name, point, config))
    return runs


def ordered_keys(points) -> list[str]:
    """The keys of one point or of many: shorthands in AXES order, then the rest as met."""
    points = [points] if isinstance(points, dict) else points
    keys = list(dict.fromkeys(key for point in points for key in point))
    return [k for k in AXES if k in keys] + [k for k in keys if k not in AXES]


def varied_keys(points: list[dict]) -> list[str]:
    """The keys whose value differs between points (or that some points lack)."""
    return [key for key in ordered_keys(points)
            if len({format_value(p[key]) if key in p else None for p in points}) > 1]


def run_name(point: dict, named: list[str]) -> str:
    """`key=value` pairs of the `named` keys (of every key if it has none), comma-joined."""
    keys = [k for k in named if k in point] or ordered_keys(point)
    return ",".join(f"{key}={format_value(point[key])}" for key in keys) or "run"


def format_value(value) -> str:
    """A value as it appears in a run name: floats as Python prints them (0.003, 1e-05), and
    only characters safe in a directory name."""
    if isinstance(value, (list, tuple)):
        return "+".join(map(format_value, value))
    return re.sub(r"[^A-Za-z0-9._+-]", "-", repr(float(value)) if isinstance(value, float)
                  else str(value))


def _canonical(key: str) -> str:
    return _SHORTHAND_OF_FIELD.get(key, key)


def _nonempty(values, what: str):
    if not values:
        raise SweepError(f"{what} is empty; give it at least one value")
    return values


def _refuse_collisions(names: list[str], points: list[dict]) -> None:
    first = {}
    for name, point in zip(names, points):
        if name in first:
            raise SweepError(f"two runs map to the workdir {name!r}: {first[name]} and {point}; "
                             "remove the duplicate, or give them a key whose values differ")
        first[name] = point


def _apply(config, key: str, value, run: str) -> None:
    """Sets one point value on `config` (see AXES)."""
    if key == "size":
        try:
            ladder.apply_size(config.model, value)
        except ValueError as err:
            raise SweepError(f"run {run}: {err}") from err
    elif key == "precision":
        _set_precision(config, value, run)
    elif key not in AXES and "." not in key and key in config.optimizer.get(
            config.optimizer.name, {}):
        _set_field(config, f"optimizer.{config.optimizer.name}.{key}", value, run)
    else:
        _set_field(config, AXES.get(key) or key, value, run)


def _set_precision(config, value: str, run: str) -> None:
    """float32 / bfloat16 set the activation dtype; anything else is an MX preset of
    lm/model/mx_presets.py (e4m3/e4m3, e4m3/bf16/fwd_only, ...): the run's precision fields
    become the defaults with the preset's fields set."""
    if value in DTYPES:
        config.precision.activation_dtype = value
        return
    try:
        fields = precision_fields(value)
    except ValueError as err:
        raise SweepError(f"run {run}: precision={value!r} is neither one of {DTYPES} "
                         f"nor an MX preset of lm/model/mx_presets.py ({err})") from err
    config.precision = run_config().precision
    config.precision.update(fields)


def _set_field(config, field: str, value, run: str) -> None:
    parts = field.split(".")
    node = config
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            options = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
            raise SweepError(f"run {run}: {field!r} is not a config field ({part!r} is not one "
                             f"of: {options}); use a shorthand of {', '.join(AXES)} or a dotted "
                             "field of configs/base.py")
        if depth < len(parts) - 1:
            node = node[part]
    try:
        node[parts[-1]] = value
    except TypeError as err:
        raise SweepError(f"run {run}: {field}={value!r}: {err}") from err


def _check(config, run: str) -> None:
    """What lm.train would refuse (plus an unknown optimizer or corpus), before any run starts."""
    registered = optim.registered_optimizers()
    if config.optimizer.name not in registered:
        raise SweepError(f"run {run}: optimizer {config.optimizer.name!r} is not registered; "
                         f"use one of {', '.join(registered)}")
    d = config.data
    try:
        needs.resolve_sources(d)
        sources.resolve(d.corpus, dict(d.sources or {}))
        if d.tokenizer == "bpe":
            for corpus in d.tokenizer_corpora:
                sources.resolve(corpus, dict(d.sources or {}), d.text_field)
        check_config(config)
    except (ConfigError, ValueError) as err:
        raise SweepError(f"run {run}: {err}") from err
    if d.corpus not in d.eval_corpora:
        raise SweepError(f"run {run}: its training corpus {d.corpus!r} is not among "
                         f"data.eval_corpora {tuple(d.eval_corpora)}, so it has no validation "
                         "loss to select learning rates on; add it to data.eval_corpora")
