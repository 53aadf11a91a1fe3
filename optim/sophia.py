"""Sophia (Liu, Li, Hall, Liang & Ma 2023, "Sophia: A Scalable Stochastic Second-order Optimizer
for Language Model Pre-training", arXiv 2305.14342), built on optax.contrib's scale_by_sophia with
the paper's Gauss-Newton-Bartlett (GNB) Hessian estimator for the LM loss (Sophia-G, the
variant the paper recommends), or optax's Hutchinson estimator (Sophia-H).

Algorithm 3 of the paper, with the GNB estimator of Algorithm 2, step t:

    m <- b1 m + (1 - b1) g
    every k steps: draw labels y^ ~ softmax(f(theta, x)) for a batch of B tokens x,
                   g^ = grad (1/B) sum_b CE(f(theta, x_b), y^_b)
                   h  <- b2 h + (1 - b2) B g^ * g^                      (GNB estimate of diag H)
    theta <- theta - lr wd theta - lr clip(m / max(rho h, eps), 1)      (elementwise, |.| <= 1)

The model-side pieces come from the train step (lm/train/step.py), which passes to `update`:
  - `sampled_loss_fn(params, rng) -> (mean cross-entropy against labels sampled from the model's
    own stop-gradient logits, number of tokens B)`, for GNB;
  - `obj_fn(params) -> loss`, for Hutchinson (optax's estimator: h ~ u * (H u), Rademacher u).
Both are evaluated on the step's first microbatch (so B is its token count).

Where this differs from the authors' SophiaG code (github.com/Liuhong99/Sophia): optax
bias-corrects m (the reference does not), and refreshes h at the end of steps 0, k, 2k, ...
(the reference at the end of steps k-1, 2k-1, ...). Both give sign-like clipped steps while h
is still small. State: m and h, 8 bytes per parameter, plus the sampling key.
"""
from typing import NamedTuple

import jax
import optax
from optax import contrib
from optax.contrib._sophia import scale_by_sophia  # not re-exported by optax.contrib

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.sophia import ESTIMATORS, SOPHIA
from optim.registry import register


class GNBState(NamedTuple):
    key: jax.Array  # PRNG key of the label sampling, advanced at each estimate


def gnb_estimator_diag_hessian(seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """The Gauss-Newton-Bartlett estimate B g^ * g^ of the Hessian diagonal (Liu et al. 2023,
    Algorithm 2), from `sampled_loss_fn(params, rng) -> (loss, B)` passed to `update`."""

    def init_fn(params):
        del params
        return GNBState(key=jax.random.PRNGKey(seed))

    def update_fn(updates, state, params=None, sampled_loss_fn=None, **extra_args):
        del updates, extra_args
        if params is None or sampled_loss_fn is None:
            raise ValueError("the GNB estimator needs params and sampled_loss_fn (the loss "
                             "against labels sampled from the model; lm/train/step.py passes it)")
        key, sample_key = jax.random.split(state.key)
        grads, tokens = jax.grad(sampled_loss_fn, has_aux=True)(params, sample_key)
        return jax.tree.map(lambda g: tokens * g * g, grads), GNBState(key=key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@SOPHIA.defaults_of()
def sophia(learning_rate: optax.ScalarOrSchedule, *, b1, b2, rho, eps, weight_decay,
           update_interval, estimator, mask=None, seed: int = 0
           ) -> optax.GradientTransformationExtraArgs:
    """Sophia with the defaults of the authors' SophiaG (betas (0.965, 0.99), rho 0.04,
    weight decay 0.1, k = 10, eps 1e-15); see the module docstring for the algorithm and what
    `update` must be given."""
    checks.learning_rate(learning_rate)
    checks.one_of("estimator", estimator, ESTIMATORS)
    checks.integer("update_interval", update_interval)
    for name, value in dict(rho=rho, eps=eps).items():
        checks.positive(name, value)
    checks.nonnegative("weight_decay", weight_decay)
    hessian = (gnb_estimator_diag_hessian(seed) if estimator == "gnb" else
               contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(seed)))
    return optax.chain(
        scale_by_sophia(b1=b1, b2=b2, eps=eps, gamma=rho, clip_threshold=1.0,
                                update_interval=update_interval, hessian_diagonal_fn=hessian),
        *decay_then_lr(learning_rate, weight_decay, mask))


@register("sophia")
def _sophia_from_config(h, schedule, decay_mask):
    """config.optimizer.sophia: Sophia-G (estimator="gnb") or Sophia-H ("hutchinson")."""
    return sophia(schedule, mask=decay_mask, **SOPHIA.values(h))
