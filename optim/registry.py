"""The optimizer registry: one place where an optimizer name maps to its builder.

A builder is `(optimizer_cfg, schedule) -> optax.GradientTransformation`; it registers itself
with `@register(name, keys=...)`, declaring the hyperparameter keys of `config.optimizer` it
reads besides COMMON_KEYS. Each optimizer lives in its own module, imported by
`optim/__init__.py` so that it registers.
"""
from typing import Any, Callable, NamedTuple, Sequence

import optax

from optim.schedules import make_schedule

COMMON_KEYS = ("name", "lr", "grad_clip")

Builder = Callable[[Any, optax.Schedule], optax.GradientTransformation]


class Optimizer(NamedTuple):
    """What the trainer uses: the update rule and its learning-rate schedule (for logging)."""
    tx: optax.GradientTransformation
    schedule: optax.Schedule


class _Entry(NamedTuple):
    build: Builder
    keys: tuple[str, ...]  # all keys config.optimizer must hold, COMMON_KEYS included


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, keys: Sequence[str]) -> Callable[[Builder], Builder]:
    """Decorator registering `builder(optimizer_cfg, schedule)` as optimizer `name`; `keys`
    are the optimizer's own hyperparameter keys in config.optimizer."""
    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder, COMMON_KEYS + tuple(keys))
        return builder

    return decorator


def registered_optimizers() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_optimizer(optimizer_cfg, schedule_cfg, total_steps: int) -> Optimizer:
    """The optimizer `optimizer_cfg.name` with peak lr `optimizer_cfg.lr` on the schedule
    `schedule_cfg`, after global-norm gradient clipping at `optimizer_cfg.grad_clip` (Pascanu
    et al. 2013; 0 or None disables it)."""
    name = optimizer_cfg.name
    if name not in _REGISTRY:
        raise ValueError(f"optimizer.name={name!r} is not a registered optimizer; use one of "
                         f"{', '.join(registered_optimizers())}")
    entry = _REGISTRY[name]
    _check_keys(optimizer_cfg, name, entry.keys)
    clip = optimizer_cfg.grad_clip
    if clip is not None and clip < 0:
        raise ValueError(f"optimizer.grad_clip={clip} must be >= 0 (0 or None disables "
                         "clipping)")
    schedule = make_schedule(schedule_cfg, optimizer_cfg.lr, total_steps)
    # identity() keeps the state tree the same with clipping off, so a run can resume with it.
    clipping = optax.clip_by_global_norm(clip) if clip else optax.identity()
    return Optimizer(tx=optax.chain(clipping, entry.build(optimizer_cfg, schedule)),
                     schedule=schedule)


def _check_keys(optimizer_cfg, name: str, accepted: tuple[str, ...]) -> None:
    """config.optimizer must hold exactly the keys optimizer `name` reads."""
    unknown = [k for k in optimizer_cfg.keys() if k not in accepted]
    missing = [k for k in accepted if k not in optimizer_cfg]
    problems = []
    if unknown:
        problems.append(f"has {', '.join(map(repr, unknown))}, unknown to optimizer {name!r}")
    if missing:
        problems.append(f"lacks {', '.join(map(repr, missing))}")
    if problems:
        raise ValueError(f"config.optimizer {' and '.join(problems)}; optimizer {name!r} "
                         f"accepts exactly: {', '.join(accepted)}")
