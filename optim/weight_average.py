"""Exponential weight averaging (EWA) of the parameters, as an optax transform.

Zhang et al. 2024 ("How Does Critical Batch Size Scale in Pre-training?", arXiv 2410.21676,
Sec. 3) train at a constant learning rate and evaluate an exponential moving average of the
iterates, which stands in for a decaying schedule without fixing the run's length in advance:

    xi_{t+1} = d xi_t + (1 - d) theta_{t+1},   xi_0 = theta_0.

Placed last in a chain, `average_parameters` passes the updates through unchanged and keeps xi
in its state; `averaged_params` reads it for evaluation.
"""
from typing import NamedTuple

import jax
import optax


class WeightAverageState(NamedTuple):
    average: optax.Params  # xi: the moving average of the parameters after each update


def average_parameters(decay: float) -> optax.GradientTransformation:
    """Keeps xi <- decay xi + (1 - decay) (params + updates); the updates pass unchanged."""
    if not 0 < decay < 1:
        raise ValueError(f"optimizer.weight_average_decay={decay} must lie in (0, 1) (0 "
                         "disables weight averaging)")

    def init(params):
        return WeightAverageState(jax.tree_util.tree_map(lambda p: p.copy(), params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("average_parameters needs the parameters in update()")
        average = jax.tree_util.tree_map(
            lambda xi, p, u: decay * xi + (1 - decay) * (p + u).astype(xi.dtype),
            state.average, params, updates)
        return updates, WeightAverageState(average)

    return optax.GradientTransformation(init, update)


def averaged_params(state: WeightAverageState, params):
    """The parameters to evaluate: the moving average (`params` are the current iterate)."""
    del params
    return state.average
