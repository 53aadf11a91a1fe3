"""Arithmetic the optimizers share."""
import math

import jax.numpy as jnp


def one_minus_power(beta: float, step):
    """1 - beta^step (Adam's bias correction), with log(beta) taken in float64 and expm1, so
    it stays accurate for beta near 1 and a float32 step (a plain 1 - beta**t in float32 is
    ~1e-5 off at t = 1 for beta = 0.999). `step` is cast to the default float dtype."""
    step = jnp.asarray(step, jnp.result_type(float))
    if beta == 0.0:
        return jnp.ones_like(step)
    return -jnp.expm1(step * math.log(beta))
