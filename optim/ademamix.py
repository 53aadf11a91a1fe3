r"""AdEMAMix and Simplified-AdEMAMix, matching their authors' PyTorch references step for step.

AdEMAMix (Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer: Better, Faster,
Older", arXiv:2409.03137, Algorithm 1; reference github.com/apple/ml-ademamix,
pytorch/ademamix.py) mixes a fast and a slow EMA of the gradients. At the 1-based step t, with
gradient g, parameters theta and learning rate eta_t:

    m1 <- b1 m1 + (1 - b1) g                        (fast EMA; m1 = g when b1 = 0)
    m2 <- b3(t) m2 + (1 - b3(t)) g                  (slow EMA, no bias correction)
    nu <- b2 nu + (1 - b2) g^2
    u   = (m1 / (1 - b1^t) + alpha(t) m2) / (sqrt(nu) / sqrt(1 - b2^t) + eps)
    theta <- theta - eta_t (u + wd theta)           (= theta (1 - eta_t wd) - eta_t u)

with the paper's warmups (Algorithm 1; reference `linear_warmup_scheduler`,
`linear_hl_warmup_scheduler`), both evaluated at the 1-based step t:

    alpha(t) = alpha * t / T_alpha                  for t < T_alpha, then alpha
    b3(t)    = f^-1((1 - t/T_b3) f(b1) + (t/T_b3) f(b3))   for t < T_b3, then b3
    f(b)     = ln(0.5) / ln(b + 1e-8) - 1,   f^-1(h) = 0.5^(1 / (h + 1))

(f is the half-life of an EMA with rate b, so b3 grows with a linearly growing half-life).

Simplified-AdEMAMix (Morwani, Vyas, et al. 2025, "Connections between Schedule-Free
Optimizers, AdEMAMix, and Accelerated SGD Variants", arXiv:2502.02431, the Simplified-AdEMAMix
algorithm; reference github.com/DepenM/Simplified-AdEMAMix, simplified_AdEMAMix.py) drops the
fast EMA and keeps an undamped momentum *sum*:

    m   <- b1(t) m + g                              (no (1 - b1) factor)
    S1  <- b1(t) S1 + 1,   S2 = 1 - b2^t            (= the reference's num_sum, den_sum)
    nu  <- b2 nu + (1 - b2) g^2
    u   = (alpha g + m) / (sqrt(nu) + eps sqrt(S2))
          [/ S1 if bias_correction1] [* sqrt(S2) if bias_correction2]
    theta <- theta - eta_t (u + wd theta)

    b1(t) = f^-1((1 - t/T) f(min_b1) + (t/T) f(b1)) for t < T = b1_warmup, then b1.

With alpha = 0 and both bias corrections on it is exactly AdamW(b1, b2, eps, wd): m / S1 is
Adam's bias-corrected first moment. With alpha > 0, bias_correction1 off and bias_correction2 on
it equals AdEMAMix with b1 = 0, b3 = b1, alpha' = 1 / (alpha (1 - b1)), lr' = alpha lr,
wd' = wd / alpha (the AdEMAMix-with-b1=0 form it is derived from; an algebraic identity,
checked in tests/optim/test_ademamix.py).

Weight decay is the references' "as in AdamW": decoupled and multiplied by the scheduled
learning rate (the PyTorch / optax convention), applied to the parameters before the step; a
`mask` restricts it as in optax.adamw. The learning rate is a float or an optax schedule of the
0-based update count (update k uses schedule(k)), as in every optax optimizer.

Why not optax.contrib.ademamix / simplified_ademamix: they evaluate b3/alpha schedules at the
0-based count (the references at the 1-based step), have no warmups, other defaults (alpha=5),
and the simplified one has no bias_correction1 / bias_correction2=False, no b1 warmup, and
scales eps differently without bias correction. The transforms here are written directly; they
reuse optax's add_decayed_weights and scale_by_learning_rate for the last two steps. 1 - beta
and 1 - beta^t are computed from float64 constants (expm1 / log), so float32 runs lose no
precision on betas near 1 (the references compute these scalars in float64 Python).
"""
import math
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax
from optax._src import numerics

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.ademamix import ADEMAMIX, SIMPLIFIED_ADEMAMIX
from optim.numerics import one_minus_power
from optim.registry import register

_HL_EPS = 1e-8  # the eps inside the references' half-life function f


class ScaleByAdemamixState(NamedTuple):
    """count: updates done so far (int32); m1: fast EMA (None when b1 = 0, as the reference
    stores none); m2: slow EMA; nu: EMA of squared gradients."""
    count: jax.Array
    m1: Any
    m2: Any
    nu: Any


class ScaleBySimplifiedAdemamixState(NamedTuple):
    """count: updates done so far (int32); num_sum: the reference's sum of b1 powers (S1);
    m: momentum sum of gradients; nu: EMA of squared gradients."""
    count: jax.Array
    num_sum: jax.Array
    m: Any
    nu: Any


# --------------------------------------------------------------------------- validation


def _check_hl_end(name, beta, warmup_name):
    # f(beta) = ln 0.5 / ln(beta + 1e-8) - 1 needs beta + 1e-8 < 1.
    if not beta + _HL_EPS < 1.0:
        raise ValueError(f"{name}={beta!r} must be < 1 - 1e-8 when {warmup_name} is set "
                         "(the half-life warmup is undefined otherwise)")


# --------------------------------------------------------------------------- schedules


def _float(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _half_life(beta):
    """The references' f: half-life (minus one) of an EMA with rate beta, in float64."""
    return math.log(0.5) / math.log(beta + _HL_EPS) - 1.0


def _hl_warmup(step, beta_end, beta_start, warmup):
    """(beta, 1 - beta) at the 1-based `step` (int array) of the references'
    linear_hl_warmup_scheduler; 1 - beta from expm1, so it is accurate near beta = 1."""
    if warmup is None:
        return _float(beta_end), _float(1.0 - beta_end)
    h0, h1 = _half_life(beta_start), _half_life(beta_end)
    a = _float(step) / float(warmup)
    log_beta = math.log(0.5) / ((1.0 - a) * h0 + a * h1 + 1.0)
    in_warmup = step < warmup
    beta = jnp.where(in_warmup, jnp.exp(log_beta), beta_end)
    one_minus = jnp.where(in_warmup, -jnp.expm1(log_beta), 1.0 - beta_end)
    return beta, one_minus


def _linear_warmup(step, end, warmup):
    """The reference's linear_warmup_scheduler from 0 at the 1-based `step`."""
    if warmup is None:
        return _float(end)
    a = _float(step) / float(warmup)
    return jnp.where(step < warmup, a * end, _float(end))


def _cast(x, like):
    return x.astype(like.dtype)


# --------------------------------------------------------------------------- AdEMAMix


@ADEMAMIX.defaults_of(exclude=("weight_decay", "b3_warmup", "alpha_warmup"))
def scale_by_ademamix(*, b1, b2, b3, alpha, eps, b3_warmup=None,
                      alpha_warmup=None) -> optax.GradientTransformation:
    """The AdEMAMix direction u (module docstring), without learning rate or weight decay."""
    for name, value in (("b1", b1), ("b2", b2), ("b3", b3)):
        checks.in_unit_interval(name, value)
    checks.nonnegative("alpha", alpha)
    checks.positive("eps", eps)
    checks.optional_steps("b3_warmup", b3_warmup)
    checks.optional_steps("alpha_warmup", alpha_warmup)
    if b3_warmup is not None:
        _check_hl_end("b3", b3, "b3_warmup")
    one_minus_b1, one_minus_b2 = 1.0 - b1, 1.0 - b2

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return ScaleByAdemamixState(count=jnp.zeros([], jnp.int32),
                                    m1=None if b1 == 0.0 else zeros(), m2=zeros(), nu=zeros())

    def update_fn(updates, state, params=None):
        del params
        count = numerics.safe_int32_increment(state.count)
        step = count  # the reference's 1-based state["step"]
        c_alpha = _linear_warmup(step, alpha, alpha_warmup)
        c_b3, c_1mb3 = _hl_warmup(step, b3, b1, b3_warmup)
        bc1 = one_minus_power(b1, step)
        sqrt_bc2 = jnp.sqrt(one_minus_power(b2, step))

        if b1 == 0.0:
            m1 = None
            fast = updates
        else:
            m1 = jax.tree.map(lambda m, g: b1 * m + one_minus_b1 * g, state.m1, updates)
            fast = m1
        m2 = jax.tree.map(lambda m, g: _cast(c_b3, m) * m + _cast(c_1mb3, g) * g,
                          state.m2, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + one_minus_b2 * (g * g), state.nu, updates)

        def direction(f, s, v):
            denom = jnp.sqrt(v) / _cast(sqrt_bc2, v) + eps
            return (f / _cast(bc1, f) + _cast(c_alpha, s) * s) / denom

        out = jax.tree.map(direction, fast, m2, nu)
        return out, ScaleByAdemamixState(count=count, m1=m1, m2=m2, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@ADEMAMIX.defaults_of(exclude=("weight_decay", "b3_warmup", "alpha_warmup"))
def ademamix(learning_rate: Union[float, Callable], *, b1, b2, b3, alpha, eps,
             weight_decay: float = 0.0, b3_warmup: Optional[int] = None,
             alpha_warmup: Optional[int] = None, mask=None) -> optax.GradientTransformation:
    """AdEMAMix (Pagliardini et al. 2024, Algorithm 1), as apple/ml-ademamix's PyTorch step.

    b3 warms up from b1 over `b3_warmup` steps (half-life interpolation), alpha from 0 over
    `alpha_warmup` steps; None disables a warmup. Weight decay: theta <- theta - lr_t (u + wd
    theta) on the leaves `mask` selects (all if None). State: int32 count + m1, m2, nu like
    the params (m1 omitted when b1 = 0), plus the lr schedule's count.
    """
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(
        scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, b3_warmup=b3_warmup,
                          alpha_warmup=alpha_warmup),
        *decay_then_lr(learning_rate, weight_decay, mask))


# --------------------------------------------------------------------------- Simplified


@SIMPLIFIED_ADEMAMIX.defaults_of(exclude=("weight_decay", "b1_warmup"))
def scale_by_simplified_ademamix(*, b1, b2, alpha, eps, min_b1, bias_correction1,
                                 bias_correction2, b1_warmup=None
                                 ) -> optax.GradientTransformation:
    """The Simplified-AdEMAMix direction u (module docstring), without lr or weight decay."""
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.nonnegative("alpha", alpha)
    checks.positive("eps", eps)
    checks.optional_steps("b1_warmup", b1_warmup)
    checks.nonnegative("min_b1", min_b1)
    if not min_b1 <= b1:
        raise ValueError(f"min_b1={min_b1!r} must lie in [0, b1={b1}]")
    if b1_warmup is not None:
        _check_hl_end("b1", b1, "b1_warmup")
    one_minus_b2 = 1.0 - b2

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return ScaleBySimplifiedAdemamixState(count=jnp.zeros([], jnp.int32),
                                              num_sum=jnp.zeros([], jnp.result_type(float)),
                                              m=zeros(), nu=zeros())

    def update_fn(updates, state, params=None):
        del params
        count = numerics.safe_int32_increment(state.count)
        step = count  # the reference's 1-based state["step"]
        c_b1, _ = _hl_warmup(step, b1, min_b1, b1_warmup)
        num_sum = c_b1.astype(state.num_sum.dtype) * state.num_sum + 1.0
        sqrt_den = jnp.sqrt(one_minus_power(b2, step))  # den_sum = 1 - b2^t
        scale = _float(1.0)
        if bias_correction1:
            scale = scale / num_sum
        if bias_correction2:
            scale = scale * sqrt_den

        m = jax.tree.map(lambda m_, g: _cast(c_b1, m_) * m_ + g, state.m, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + one_minus_b2 * (g * g), state.nu, updates)

        def direction(g, m_, v):
            denom = jnp.sqrt(v) + _cast(eps * sqrt_den, v)
            return (alpha * g + m_) / denom * _cast(scale, g)

        out = jax.tree.map(direction, updates, m, nu)
        return out, ScaleBySimplifiedAdemamixState(count=count, num_sum=num_sum, m=m, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@SIMPLIFIED_ADEMAMIX.defaults_of(exclude=("b1_warmup",))
def simplified_ademamix(learning_rate: Union[float, Callable], *, b1, b2, alpha, eps,
                        weight_decay, min_b1, bias_correction1, bias_correction2,
                        b1_warmup: Optional[int] = None,
                        mask=None) -> optax.GradientTransformation:
    """Simplified-AdEMAMix (Morwani et al. 2025), as DepenM/Simplified-AdEMAMix's PyTorch step.

    b1 warms up from `min_b1` over `b1_warmup` steps (half-life interpolation; None: off).
    Weight decay: theta <- theta - lr_t (u + wd theta) on the leaves `mask` selects. State:
    int32 count, a scalar num_sum, m and nu like the params, plus the lr schedule's count.
    """
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(
        scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps, b1_warmup=b1_warmup,
                                     min_b1=min_b1, bias_correction1=bias_correction1,
                                     bias_correction2=bias_correction2),
        *decay_then_lr(learning_rate, weight_decay, mask))


def _warmups_off_at_zero(values: dict) -> dict:
    """A config's warmup of 0 (a typed field) is the functions' None: no warmup."""
    return {k: (v or None) if k.endswith("_warmup") else v for k, v in values.items()}


# The config's weight_decay is 0.1, the paper's language-model setting (the function's default
# is the reference's 0).
@register("ademamix")
def _ademamix_from_config(h, schedule, decay_mask):
    """config.optimizer.ademamix; a warmup of 0 means none."""
    return ademamix(schedule, mask=decay_mask, **_warmups_off_at_zero(ADEMAMIX.values(h)))


@register("simplified_ademamix")
def _simplified_ademamix_from_config(h, schedule, decay_mask):
    """config.optimizer.simplified_ademamix; a warmup of 0 means none."""
    return simplified_ademamix(schedule, mask=decay_mask,
                               **_warmups_off_at_zero(SIMPLIFIED_ADEMAMIX.values(h)))
