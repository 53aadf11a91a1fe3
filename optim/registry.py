"""The optimizer registry: one place where an optimizer name maps to its builder; its
hyperparameters (defaults, docs, study grids) are defined once in optim/hparams/.

    @register("adamw")
    def adamw(h, schedule, decay_mask): ...

    schedule = optim.make_schedule(config.schedule, config.optimizer.lr, config.train.steps)
    optimizer = optim.build(config.optimizer, schedule, params)

`h` is the optimizer's own section of the config, `config.optimizer.<name>`, built from
`optim.hparams.HYPERPARAMETERS[name]` (so `--config.optimizer.soap.b1=0.9` works); `schedule` is
the learning-rate schedule; `decay_mask` marks the parameters weight decay applies to. The keys
shared by all optimizers sit directly in `config.optimizer` (optim/settings.py): name, lr,
grad_clip, weight_average_decay, and `groups`, the parameter groups (optim/masks.py) with their
own lr multipliers and weight decay.
"""
import importlib
from typing import Any, Callable, NamedTuple

import optax

from core.fields import Section
from optim.hparams import HYPERPARAMETERS, IMPLEMENTATIONS
from optim.masks import (
    group_of,
    lr_multipliers,
    scale_by_multipliers,
    weight_decay_mask,
)
from optim.schedules import make_schedule
from optim.settings import SHARED
from optim.weight_average import average_parameters, averaged_params

Builder = Callable[[Any, optax.Schedule, Callable], optax.GradientTransformation]


def identity_eval_params(opt_state, params):
    return params


class Optimizer(NamedTuple):
    """What the trainer uses: the update rule, its learning-rate schedule (for logging), and
    the parameters to evaluate with (schedule-free methods evaluate at another point)."""
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    eval_params: Callable = identity_eval_params


class _Entry(NamedTuple):
    build: Builder
    eval_params: Callable
    supports_mup: bool
    linear_in_lr: bool
    needs_model: bool


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, hyperparameters: Section | None = None,
             eval_params: Callable = identity_eval_params, supports_mup: bool = True,
             linear_in_lr: bool = True, needs_model: bool = False):
    """Decorator registering `builder(h, schedule, decay_mask)` as optimizer `name`, whose
    hyperparameters optim/hparams/ defines, or `hyperparameters` for an optimizer defined
    outside optiscale (a Section named "optimizer.<name>").

    `linear_in_lr`: the update is proportional to the learning rate, so per-group lr
    multipliers can scale it after the fact (not so for schedule-free methods, whose iterates
    live in their state). `supports_mup`: the update is moreover Adam-like (its scale does not
    depend on the gradient's), so muP's per-layer learning rates (hidden matrices: lr / m)
    apply to it. `needs_model`: the builder also takes `model=`, the run's model config
    (`config.model`), for an optimizer that partitions parameters by the architecture
    (Adam-mini's per-head blocks).
    """
    def decorator(builder: Builder) -> Builder:
        if hyperparameters is not None:
            if name in HYPERPARAMETERS:
                raise ValueError(f"optimizer {name!r} already has hyperparameters")
            HYPERPARAMETERS[name] = hyperparameters
        if name not in HYPERPARAMETERS:
            raise ValueError(f"optimizer {name!r} has no hyperparameters in optim/hparams/; "
                             "define its Section there first")
        if name in IMPLEMENTATIONS:  # its own module registers it (a no-op while it does)
            importlib.import_module(IMPLEMENTATIONS[name])
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder, eval_params, supports_mup and linear_in_lr,
                                 linear_in_lr, needs_model)
        return builder

    return decorator


def registered_optimizers() -> tuple[str, ...]:
    return tuple(sorted(HYPERPARAMETERS))


def _entry(name: str) -> _Entry:
    """The registered builder of `name`, importing its implementation module on first use."""
    if name not in _REGISTRY:
        importlib.import_module(IMPLEMENTATIONS[name])
    return _REGISTRY[name]


def build(optimizer_cfg, schedule: optax.Schedule, params,
          mup_width_mult: float | None = None, model=None) -> Optimizer:
    """The optimizer `optimizer_cfg.name` on the learning-rate `schedule` (whose peak is
    `optimizer_cfg.lr`; see make_schedule), after global-norm gradient clipping at
    `optimizer_cfg.grad_clip` (Pascanu et al. 2013; 0 or None disables it), with the parameter
    groups `optimizer_cfg.groups` (lr multipliers, weight decay) and muP's learning rates for
    width multiplier `mup_width_mult` (None: standard parameterization). `model` is the run's
    model config, which optimizers registered with `needs_model` require.

    `params` (arrays or jax.ShapeDtypeStruct, e.g. from jax.eval_shape) are the parameters the
    optimizer will update: the groups are resolved and checked against them, so a config error
    surfaces here, before anything compiles.
    """
    SHARED.check(optimizer_cfg)
    name = optimizer_cfg.name
    if name not in HYPERPARAMETERS:
        raise ValueError(f"optimizer.name={name!r} is not a registered optimizer; use one of "
                         f"{', '.join(registered_optimizers())}, or --import the module of "
                         "your own that registers it (docs/optimizers.md)")
    entry = _entry(name)
    if name not in optimizer_cfg:
        raise ValueError(f"config.optimizer has no section {name!r} with the hyperparameters of "
                         f"optimizer {name!r}; build the config from configs/base.py")
    h = optimizer_cfg[name]
    _check_hyperparameters(h, name)
    if mup_width_mult is not None and not entry.supports_mup:
        adam_like = ", ".join(n for n in registered_optimizers() if _entry(n).supports_mup)
        raise ValueError(f"muP (model.mup_base_width > 0) is implemented for optimizers with "
                         f"Adam-like updates; {name!r} needs other per-layer learning rates. "
                         f"Use one of {adam_like}, or set model.mup_base_width=0")
    if entry.needs_model and model is None:
        raise ValueError(f"optimizer {name!r} partitions the parameters by the model's "
                         "architecture: pass model=config.model to optim.build (or use "
                         "optim.build_from_config)")
    groups = optimizer_cfg.groups
    group_of(params, groups, require_every_group=True)
    scaled = [g for g, group in groups.items() if group.lr_multiplier != 1]
    if scaled and not entry.linear_in_lr:
        raise ValueError(f"optimizer.groups.{scaled[0]}.lr_multiplier="
                         f"{groups[scaled[0]].lr_multiplier}: optimizer {name!r} keeps its "
                         "iterates in its state, so its updates cannot be rescaled per group; "
                         "set the lr_multiplier to 1 or use another optimizer")
    clip = optimizer_cfg.grad_clip

    def decay_mask(tree):
        return weight_decay_mask(tree, groups)

    def multipliers(tree):
        return lr_multipliers(tree, groups, mup_width_mult)

    # identity() keeps the state tree the same with clipping off, so a run can resume with it.
    clipping = optax.clip_by_global_norm(clip) if clip else optax.identity()
    own = (entry.build(h, schedule, decay_mask, model=model) if entry.needs_model
           else entry.build(h, schedule, decay_mask))
    parts = [clipping, own, scale_by_multipliers(multipliers)]
    decay = optimizer_cfg.get("weight_average_decay", 0.0)
    if decay:
        if entry.eval_params is not identity_eval_params:
            raise ValueError(f"optimizer.weight_average_decay={decay}: optimizer {name!r} "
                             "evaluates its own averaged point already; set it to 0")
        # State (clipping, optimizer, (), average): evaluations use the average.
        return Optimizer(tx=optax.chain(*parts, average_parameters(decay)), schedule=schedule,
                         eval_params=lambda state, params: averaged_params(state[3], params))
    # The chain's state is (clipping state, optimizer state, ()): eval_params sees the second.
    return Optimizer(tx=optax.chain(*parts), schedule=schedule,
                     eval_params=lambda state, params: entry.eval_params(state[1], params))


def build_from_config(config, params, mup_width_mult: float | None = None) -> Optimizer:
    """`build` for a whole run config: `config.optimizer` on the schedule `config.schedule`
    over `config.train.steps` steps, for the model `config.model`."""
    schedule = make_schedule(config.schedule, config.optimizer.lr, config.train.steps)
    return build(config.optimizer, schedule, params, mup_width_mult, config.model)


def _check_hyperparameters(h, name: str) -> None:
    """config.optimizer.<name> must hold exactly the keys optimizer `name` defines, each within
    its definition's range."""
    section = HYPERPARAMETERS[name]
    unknown = [k for k in h.keys() if k not in section.fields]
    missing = [k for k in section.fields if k not in h]
    problems = []
    if unknown:
        problems.append(f"has {', '.join(map(repr, unknown))}, unknown to optimizer {name!r}")
    if missing:
        problems.append(f"lacks {', '.join(map(repr, missing))}")
    if problems:
        raise ValueError(f"config.optimizer.{name} {' and '.join(problems)}; optimizer "
                         f"{name!r} accepts exactly: {', '.join(section.fields)}")
    section.check(h)
