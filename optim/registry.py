"""The optimizer registry: one place where an optimizer name maps to its builder and defaults.

    @register("adamw", defaults=dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1))
    def adamw(h, schedule, decay_mask): ...

`h` is the optimizer's own section of the config, `config.optimizer.<name>`, whose defaults are
`defaults` (so `configs/base.py` holds a section for every registered optimizer and
`--config.optimizer.soap.b1=0.9` works); `schedule` is the learning-rate schedule; `decay_mask`
marks the parameters weight decay applies to. The keys shared by all optimizers sit directly in
`config.optimizer`: COMMON_KEYS.
"""
from typing import Any, Callable, NamedTuple

import optax

from optim.masks import matrix_mask, weight_decay_mask
from optim.schedules import make_schedule

COMMON_KEYS = ("name", "lr", "grad_clip", "decay_embeddings")
UNIT_INTERVAL_KEYS = ("b1", "b2", "b3", "beta", "momentum")

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
    defaults: dict
    eval_params: Callable
    supports_mup: bool


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, defaults: dict, eval_params: Callable = identity_eval_params,
             supports_mup: bool = True):
    """Decorator registering `builder(h, schedule, decay_mask)` as optimizer `name`.

    `supports_mup`: the update is Adam-like (its scale does not depend on the gradient's), so
    muP's per-layer learning rates (hidden matrices: lr / m) apply to it.
    """
    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder, dict(defaults), eval_params, supports_mup)
        return builder

    return decorator


def registered_optimizers() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def optimizer_defaults() -> dict[str, dict]:
    """name -> that optimizer's hyperparameter defaults (its config section)."""
    return {name: dict(entry.defaults) for name, entry in sorted(_REGISTRY.items())}


def mup_lr_scale(width_mult: float) -> optax.GradientTransformation:
    """muP's per-layer learning rates for Adam-type updates (Yang et al. 2022, Table 3): the
    updates of hidden matrices are divided by the width multiplier m; embeddings, norms and
    biases keep the base learning rate. Its state is empty, whatever m."""
    return optax.masked(optax.scale(1.0 / width_mult), matrix_mask)


def build_optimizer(optimizer_cfg, schedule_cfg, total_steps: int,
                    mup_width_mult: float | None = None) -> Optimizer:
    """The optimizer `optimizer_cfg.name` with peak lr `optimizer_cfg.lr` on the schedule
    `schedule_cfg`, after global-norm gradient clipping at `optimizer_cfg.grad_clip` (Pascanu
    et al. 2013; 0 or None disables it), and with muP's learning rates for width multiplier
    `mup_width_mult` (None: standard parameterization)."""
    name = optimizer_cfg.name
    if name not in _REGISTRY:
        raise ValueError(f"optimizer.name={name!r} is not a registered optimizer; use one of "
                         f"{', '.join(registered_optimizers())}")
    entry = _REGISTRY[name]
    if name not in optimizer_cfg:
        raise ValueError(f"config.optimizer has no section {name!r} with the hyperparameters of "
                         f"optimizer {name!r}; build the config from configs/base.py")
    h = optimizer_cfg[name]
    _check_hyperparameters(h, name, entry.defaults)
    if mup_width_mult is not None and not entry.supports_mup:
        adam_like = ", ".join(n for n, e in sorted(_REGISTRY.items()) if e.supports_mup)
        raise ValueError(f"muP (model.mup_base_width > 0) is implemented for optimizers with "
                         f"Adam-like updates; {name!r} needs other per-layer learning rates. "
                         f"Use one of {adam_like}, or set model.mup_base_width=0")
    clip = optimizer_cfg.grad_clip
    if clip is not None and clip < 0:
        raise ValueError(f"optimizer.grad_clip={clip} must be >= 0 (0 or None disables "
                         "clipping)")
    schedule = make_schedule(schedule_cfg, optimizer_cfg.lr, total_steps)
    decay_embeddings = optimizer_cfg.decay_embeddings

    def decay_mask(params):
        return weight_decay_mask(params, decay_embeddings=decay_embeddings)

    # identity() keeps the state tree the same with clipping off, so a run can resume with it.
    clipping = optax.clip_by_global_norm(clip) if clip else optax.identity()
    tx = optax.chain(clipping, entry.build(h, schedule, decay_mask),
                     mup_lr_scale(mup_width_mult or 1.0))
    # The chain's state is (clipping state, optimizer state): eval_params sees the latter.
    return Optimizer(tx=tx, schedule=schedule,
                     eval_params=lambda state, params: entry.eval_params(state[1], params))


def _check_hyperparameters(h, name: str, defaults: dict) -> None:
    """config.optimizer.<name> must hold exactly the keys optimizer `name` reads, and its
    decay rates must lie in [0, 1)."""
    unknown = [k for k in h.keys() if k not in defaults]
    missing = [k for k in defaults if k not in h]
    problems = []
    if unknown:
        problems.append(f"has {', '.join(map(repr, unknown))}, unknown to optimizer {name!r}")
    if missing:
        problems.append(f"lacks {', '.join(map(repr, missing))}")
    if problems:
        raise ValueError(f"config.optimizer.{name} {' and '.join(problems)}; optimizer "
                         f"{name!r} accepts exactly: {', '.join(defaults)}")
    for key in UNIT_INTERVAL_KEYS:
        if key in h and h[key] is not None and not 0 <= h[key] < 1:
            raise ValueError(f"optimizer.{name}.{key}={h[key]} must lie in [0, 1)")
