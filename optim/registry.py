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

from optim.masks import weight_decay_mask
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


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, defaults: dict, eval_params: Callable = identity_eval_params):
    """Decorator registering `builder(h, schedule, decay_mask)` as optimizer `name`."""
    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder, dict(defaults), eval_params)
        return builder

    return decorator


def registered_optimizers() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def optimizer_defaults() -> dict[str, dict]:
    """name -> that optimizer's hyperparameter defaults (its config section)."""
    return {name: dict(entry.defaults) for name, entry in sorted(_REGISTRY.items())}


def build_optimizer(optimizer_cfg, schedule_cfg, total_steps: int) -> Optimizer:
    """The optimizer `optimizer_cfg.name` with peak lr `optimizer_cfg.lr` on the schedule
    `schedule_cfg`, after global-norm gradient clipping at `optimizer_cfg.grad_clip` (Pascanu
    et al. 2013; 0 or None disables it)."""
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
    tx = optax.chain(clipping, entry.build(h, schedule, decay_mask))
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
