"""Decoupled weight decay, before the step (optax.adamw's order) or after it (SOAP's).

optax.add_decayed_weights, chained before the learning rate (`decay_then_lr`), decays the
parameters the step starts from: p' = p - lr (u + wd p). The SOAP reference (nikhilvyas/SOAP,
soap.py) steps first and then decays the stepped parameters, p' = (p - lr u)(1 - lr wd), which is
`add_decayed_weights_after_step` chained after the learning rate.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks


def decay_then_lr(learning_rate: optax.ScalarOrSchedule, weight_decay: float,
                  mask=None) -> tuple:
    """The two transforms to chain after a direction u, `optax.chain(direction,
    *decay_then_lr(...))`: decoupled weight decay of the parameters `mask` selects (optax's
    `mask`; None: all), then the learning rate (a float or a schedule of the update count):
    p <- p - lr_t (u + wd p), optax.adamw's order and PyTorch's convention. The caller checks
    both arguments (optim.checks), with its others."""
    return (optax.add_decayed_weights(weight_decay, mask),
            optax.scale_by_learning_rate(learning_rate))


class DecayAfterStepState(NamedTuple):
    count: jax.Array  # int32, calls so far


def add_decayed_weights_after_step(weight_decay: float, learning_rate: optax.ScalarOrSchedule,
                                   mask=None, first_step: int = 0
                                   ) -> optax.GradientTransformation:
    """u -> u - lr_t wd (p + u) on the parameters `mask` selects (as optax's `mask`: a pytree
    of bools or a callable of the params; None: all), for the updates u of a step already
    scaled by the learning rate. `learning_rate` is a float or a schedule of the call count;
    calls before `first_step` pass u through (SOAP's first call leaves the parameters as they
    are, decay included)."""
    checks.nonnegative("weight_decay", weight_decay)
    checks.learning_rate(learning_rate)

    def init_fn(params):
        del params
        return DecayAfterStepState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        if params is None and weight_decay:
            raise ValueError("weight decay needs the params: call update(updates, state, "
                             "params) when weight_decay > 0")
        if weight_decay:
            lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
            active = state.count >= first_step
            updates = jax.tree.map(
                lambda u, p: jnp.where(active, u - lr * weight_decay * (p.astype(u.dtype) + u),
                                       u).astype(u.dtype), updates, params)
        return updates, DecayAfterStepState(optax.safe_int32_increment(state.count))

    transform = optax.GradientTransformation(init_fn, update_fn)
    return transform if mask is None else optax.masked(transform, mask)
