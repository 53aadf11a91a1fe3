r"""MARS-AdamW: AdamW on a clipped, variance-reduced gradient, matching the authors' PyTorch code.

Yuan, Liu, Wu, Zhou & Gu 2024, "MARS: Unleashing the Power of Variance Reduction for Training
Large Models", arXiv:2411.10438 (ICML 2025). Reference: github.com/AGI-Arena/MARS,
MARS/optimizers/mars.py, class MARS with mars_type="mars-adamw" (the default), followed step for
step in its default mode (is_approx=True, optimize_1d=False, amsgrad=False).

MARS (the paper's framework, as its README writes it) at the 1-based step t, with the stochastic
gradient g_t = grad f(x_t, xi_t) of a parameter x and learning rate eta_t:

    c_t  = g_t + gamma b1 / (1 - b1) (g_t - g_{t-1})      (scaled gradient correction)
    c~_t = c_t / ||c_t||_2  if ||c_t||_2 > 1, else c_t     (clipped to norm <= 1, per tensor)
    m_t  = b1 m_{t-1} + (1 - b1) c~_t
    v_t  = b2 v_{t-1} + (1 - b2) c~_t^2                     (MARS-AdamW's preconditioner)
    x_{t+1} = x_t - eta_t ( m_t / ((sqrt(v_t) / sqrt(1 - b2^t) + eps) (1 - b1^t)) + wd x_t )

The paper's exact MARS takes g_{t-1} = grad f(x_{t-1}, xi_t), the previous iterate's gradient on
the *current* batch (a second backward pass); MARS-approx, the reference's default and the
README's reported setting, takes the previous step's stored gradient grad f(x_{t-1}, xi_{t-1}).
This module implements MARS-approx: `last_grad` is a state leaf shaped like the parameter
holding the previous call's (raw, unclipped) gradient, zeros before the first step, so the first
step uses c_1 = (1 + gamma b1 / (1 - b1)) g_1, as the reference does. The exact variant needs the
trainer to evaluate a second gradient and is not offered.

What the reference does, and this module with it:
- The norm in the clip is the Frobenius norm of the whole tensor (torch.norm), with no eps; a
  stacked parameter (scanned layers, `stacked`) is clipped layer by layer.
- The denominator is (sqrt(v) / sqrt(1 - b2^t) + eps) (1 - b1^t): eps is added after the second
  bias correction, as in AdamW. Weight decay is decoupled and multiplied by the scheduled lr,
  applied to the parameters before the step (x - eta (u + wd x), optax.adamw's order).
- MARS runs on 2-D tensors only (`is_grad_2d = len(grad.shape) == 2`); every other rank (norm
  scales, biases, and also 3-D+ tensors) gets plain AdamW on the raw gradient (no correction,
  no clip) with betas_1d = (b1_1d, b2_1d), the same eps, weight decay weight_decay_1d and the lr
  eta_t * lr_1d / lr (the reference fixes lr_1d_factor = lr_1d / lr at construction, so the
  1-D lr follows the schedule: here `lr_1d_factor`). optimize_1d=True runs MARS on every
  tensor with `weight_decay`. Embedding tables are 2-D, so they get MARS (nanoGPT's tied
  wte / lm_head and wpe in the authors' GPT-2 runs); so do optiscale's `embedding` and
  `unembed` kernels.
- The reference's 1-D branch decays with its constructor's weight_decay_1d whatever the param
  group's weight_decay says (nanoGPT's LayerNorm weights, in the no-decay group, are decayed at
  0.1); its 2-D branch honours the group's. Here `mask` selects the decayed parameters of both
  parts: optiscale's default rule leaves vectors undecayed, so a run that reproduces the
  reference's GPT-2 setting puts the norm scales in a group with weight_decay=True.
- Step counts are per tensor in the reference and all equal; one count here.

Written as optax writes its optimizers: `scale_by_mars` is the direction (m_hat / (sqrt(v_hat) +
eps) of the clipped, corrected gradient), chained with optax's decoupled weight decay and the
learning rate; `mars` partitions the parameters into that and optax.adamw for the rest (the
reference's AdamW branch is exactly AdamW). Bias corrections 1 - b^t come from a float64 log(b)
through expm1, as the reference computes them in Python floats.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.mars import MARS
from optim.masks import stack_flags, stacked_mask
from optim.numerics import one_minus_power
from optim.registry import register
from optim.schedules import scaled_learning_rate

_DIRECTION_ONLY = ("weight_decay", "optimize_1d", "lr_1d_factor", "b1_1d", "b2_1d",
                   "weight_decay_1d")


class ScaleByMarsState(NamedTuple):
    """count: updates done so far (int32); mu, nu: the moments of the clipped corrected
    gradient; last_grad: the previous call's gradient (zeros before the first), all shaped and
    typed like the parameters."""
    count: jax.Array
    mu: Any
    nu: Any
    last_grad: Any


def _clip_to_unit_norm(c, stacked: bool):
    """c / ||c|| where the Frobenius norm exceeds 1 (per layer when `stacked`), else c."""
    axes = tuple(range(1, c.ndim)) if stacked else None
    norm = jnp.sqrt(jnp.sum(jnp.square(c), axis=axes, keepdims=stacked))
    return jnp.where(norm > 1, c / norm, c)


@MARS.defaults_of(exclude=_DIRECTION_ONLY)
def scale_by_mars(*, b1, b2, gamma, eps, stacked=None) -> optax.GradientTransformation:
    """The MARS-AdamW direction (module docstring), without learning rate or weight decay:
    m_t / ((sqrt(v_t) / sqrt(1 - b2^t) + eps) (1 - b1^t)) of the corrected gradient c_t,
    clipped to Frobenius norm <= 1 per tensor.

    Args:
      b1: first-moment decay; the correction is scaled by gamma b1 / (1 - b1).
      b2: second-moment decay.
      gamma: strength of the gradient correction (0: AdamW on the clipped gradient).
      eps: added to the bias-corrected sqrt(v).
      stacked: a pytree of bools like the params, a callable of them, or None (none): stacks
        of layers along axis 0, each layer clipped by its own norm.
    """
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.nonnegative("gamma", gamma)
    checks.positive("eps", eps)
    correction = gamma * (b1 / (1.0 - b1))  # a Python float, as the reference's scalar

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByMarsState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros(),
                                last_grad=zeros())

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        t = jnp.asarray(count, jnp.result_type(float))
        bc1 = one_minus_power(b1, t)
        inv_sqrt_bc2 = 1.0 / jnp.sqrt(one_minus_power(b2, t))

        def one(g, m, v, last, flag):
            c = _clip_to_unit_norm((g - last) * correction + g, flag)
            m = (m * b1 + (1.0 - b1) * c).astype(m.dtype)
            v = (v * b2 + (1.0 - b2) * (c * c)).astype(v.dtype)
            denom = (jnp.sqrt(v) * inv_sqrt_bc2.astype(v.dtype) + eps) * bc1.astype(v.dtype)
            return (m / denom).astype(g.dtype), m, v, g.astype(last.dtype)

        treedef = jax.tree.structure(updates)
        columns = [treedef.flatten_up_to(tree) for tree in (
            updates, state.mu, state.nu, state.last_grad, stack_flags(stacked, updates))]
        results = [one(*leaves) for leaves in zip(*columns)]
        out, mu, nu, last_grad = (treedef.unflatten([r[i] for r in results]) for i in range(4))
        return out, ScaleByMarsState(count=count, mu=mu, nu=nu, last_grad=last_grad)

    return optax.GradientTransformation(init_fn, update_fn)


@MARS.defaults_of()
def mars(learning_rate: optax.ScalarOrSchedule, *, b1, b2, gamma, eps, weight_decay,
         optimize_1d, lr_1d_factor, b1_1d, b2_1d, weight_decay_1d, mask=None,
         stacked=None) -> optax.GradientTransformation:
    """MARS-AdamW with the authors' GPT-2 defaults (optim/hparams/mars.py), as AGI-Arena/MARS's
    `MARS(mars_type="mars-adamw", is_approx=True)` steps.

    Args:
      learning_rate: a float or a schedule of the 0-based update count.
      b1, b2, gamma, eps: MARS's (scale_by_mars); eps is also the AdamW part's.
      weight_decay: decoupled weight decay of the MARS part: x <- x - lr_t (u + wd x).
      optimize_1d: MARS on every tensor; False (the reference's default): MARS on the 2-D
        (per layer) tensors only, AdamW on the rest.
      lr_1d_factor: the AdamW part's lr over `learning_rate` (the reference's lr_1d / lr).
      b1_1d, b2_1d: the AdamW part's moment decays (the reference's betas_1d).
      weight_decay_1d: the AdamW part's decoupled weight decay, scaled by its lr.
      mask: the parameters decayed, in both parts (a pytree of bools or a callable of the
        params, as optax's; None: all).
      stacked: stacks of layers along axis 0 (scale_by_mars): each layer is clipped on its
        own, and a stack of vectors is a stack of 1-D tensors (AdamW).

    `update` needs `params` when a weight decay is > 0. The state: a count and mu, nu,
    last_grad like the MARS part's parameters; optax.adamw's count, mu, nu for the rest.
    """
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    checks.nonnegative("lr_1d_factor", lr_1d_factor)
    checks.in_unit_interval("b1_1d", b1_1d)
    checks.in_unit_interval("b2_1d", b2_1d)
    checks.nonnegative("weight_decay_1d", weight_decay_1d)
    matrices = optax.chain(
        scale_by_mars(b1=b1, b2=b2, gamma=gamma, eps=eps, stacked=stacked),
        *decay_then_lr(learning_rate, weight_decay, mask))
    if optimize_1d:
        return matrices
    rest = optax.adamw(scaled_learning_rate(learning_rate, lr_1d_factor), b1=b1_1d, b2=b2_1d,
                       eps=eps, weight_decay=weight_decay_1d, mask=mask)

    def labels(params):
        return jax.tree.map(lambda p, s: "mars" if jnp.ndim(p) - bool(s) == 2 else "adamw",
                            params, stack_flags(stacked, params))

    return optax.multi_transform({"mars": matrices, "adamw": rest}, labels)


@register("mars")
def _mars_from_config(h, schedule, decay_mask):
    """config.optimizer.mars: MARS-AdamW on the 2-D parameters (hidden matrices and embedding
    tables, each scanned layer its own), AdamW at lr x lr_1d_factor on norm scales and biases;
    both decay the parameters `decay_mask` selects. Update scale is Adam's (m_hat /
    sqrt(v_hat)), so muP's per-layer lrs apply."""
    return mars(schedule, mask=decay_mask, stacked=stacked_mask, **MARS.values(h))
