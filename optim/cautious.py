r"""Cautious optimizers: any optimizer's step, kept only where it agrees in sign with the gradient.

Liang, Chen, Liu & Liu 2024, "Cautious Optimizers: Improving Training with One Line of Code",
arXiv:2411.16085, following the authors' reference PyTorch code (github.com/kyleliang919/C-Optim,
c_adamw.py class AdamW and c_lion.py class Lion) step for step.

For an optimizer whose step is p <- p - lr_t u (u its direction, with the gradient's sign
convention: u = g for SGD), the cautious version masks u, per tensor, with where it agrees with
the current gradient g and rescales the kept entries so the step keeps its size:

    phi = 1[u * g > 0]                                   (entrywise)
    u'  = u * phi * s(phi)
    p  <- p (1 - lr_t wd) - lr_t u'                      (decoupled decay, not masked)

with s one of the references' two normalisations (`normalization`):

    "mean":  s = 1 / max(mean(phi), 1e-3)                (c_adamw.py, the default foreach path)
    "count": s = numel / (sum(phi) + 1)                  (c_lion.py; the paper's first version)

(the paper's one-line form, Algorithm 1, writes 1 / (mean(phi) + eps)). The mean, sum and numel
run over each tensor, so a stack of layers (model.scan_layers, `stacked`) is normalised layer by
layer. As in the references the mask is taken before the learning rate and the weight decay:
decay is applied to every decayed parameter whatever the mask, and entries masked out do not
move otherwise.

C-AdamW (reference c_adamw.py, AdamW with foreach=True, its default): u is Adam's direction
m_hat / (sqrt(v_hat) + eps) (eps outside the bias-corrected root; the reference compares
m * g, m the uncorrected first moment, which has u's sign). C-Lion (c_lion.py): u = sign(b1 m +
(1 - b1) g), then m <- b2 m + (1 - b2) g, as optax.scale_by_lion.

Written as optax writes its optimizers: `cautious(inner)` wraps any transform whose output is a
direction with the gradient's sign (an optax `scale_by_*`: scale_by_adam, scale_by_lion,
scale_by_rms, ...) and is chained, as here, with the decay and the learning rate; around a
complete optax optimizer (updates = -lr x direction, decay included) pass `steps=True`, which
flips the comparison (the decay is then inside what is masked, unlike the references). The
sign test is sign(u) sign(g) > 0, not u * g > 0, so that a product that underflows (tiny
gradients in bfloat16 or float32) does not drop an agreeing entry.
"""
import math

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.cautious import CAUTIOUS_ADAMW, CAUTIOUS_LION, NORMALIZATIONS
from optim.masks import stack_flags, stacked_mask
from optim.registry import register

_MEAN_FLOOR = 1e-3  # c_adamw.py: mask.mean().clamp(min=1e-3)


def _caution(u, g, stacked: bool, normalization: str, steps: bool):
    """u masked where sign(u) disagrees with sign(g) (agrees, if `steps`) and rescaled over
    each tensor (each layer of a stack)."""
    agree = jnp.sign(u) * jnp.sign(g)
    phi = (agree < 0) if steps else (agree > 0)
    # Statistics in at least float32: a bfloat16 sum of ones stops counting at 256.
    stat = jnp.promote_types(u.dtype, jnp.float32)
    axes = tuple(range(int(stacked), u.ndim))
    mask = phi.astype(stat)
    if normalization == "mean":  # as c_adamw.py: (u * mask) / mean
        mean = jnp.maximum(jnp.mean(mask, axis=axes, keepdims=True), _MEAN_FLOOR)
        return (u * phi.astype(u.dtype)) / mean.astype(u.dtype)
    numel = math.prod(u.shape[a] for a in axes)  # as c_lion.py: u * (mask * numel / (kept + 1))
    scale = numel / (jnp.sum(mask, axis=axes, keepdims=True) + 1)
    return u * (mask * scale).astype(u.dtype)


def cautious(inner: optax.GradientTransformation, *, normalization: str = "mean",
             stacked=None, steps: bool = False) -> optax.GradientTransformationExtraArgs:
    """The cautious version of `inner` (module docstring): its updates u, kept where they
    agree in sign with the incoming gradients and rescaled per tensor.

    Args:
      inner: the transform to mask; by default one returning a direction with the gradient's
        sign, before the learning rate (an optax `scale_by_*`, e.g. scale_by_adam).
      normalization: "mean" (C-AdamW's reference: 1 / max(kept fraction, 1e-3)) or "count"
        (C-Lion's reference and the paper: numel / (kept + 1)).
      stacked: a pytree of bools like the params, or a callable of them (None: none), marking
        stacks of layers along axis 0, each layer normalised on its own.
      steps: True when `inner` returns steps (-lr x direction, a complete optax optimizer):
        an entry is kept where it has the sign opposite to the gradient's.

    The state is `inner`'s own; extra arguments of update are passed on to it.
    """
    checks.one_of("normalization", normalization, NORMALIZATIONS)
    inner = optax.with_extra_args_support(inner)

    def update_fn(updates, state, params=None, **extra):
        new, state = inner.update(updates, state, params, **extra)
        new = jax.tree.map(lambda u, g, s: _caution(u, g, s, normalization, steps),
                           new, updates, stack_flags(stacked, updates))
        return new, state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


@CAUTIOUS_ADAMW.defaults_of()
def cautious_adamw(learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps, weight_decay,
                   normalization, mask=None, stacked=None) -> optax.GradientTransformation:
    """C-AdamW: optax.scale_by_adam(b1, b2, eps) made cautious, with decoupled weight decay of
    the parameters `mask` selects (None: all) and the learning rate (a float or a schedule of
    the 0-based update count). `stacked` as in `cautious`. State: Adam's (int32 count, two
    parameter-shaped moments)."""
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.nonnegative("eps", eps)
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(cautious(optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                                normalization=normalization, stacked=stacked),
                       *decay_then_lr(learning_rate, weight_decay, mask))


@CAUTIOUS_LION.defaults_of()
def cautious_lion(learning_rate: optax.ScalarOrSchedule, *, b1, b2, weight_decay,
                  normalization, mask=None, stacked=None) -> optax.GradientTransformation:
    """C-Lion: optax.scale_by_lion(b1, b2) (sign(b1 m + (1 - b1) g), then m <- b2 m +
    (1 - b2) g) made cautious, with decoupled weight decay and the learning rate as
    cautious_adamw. State: Lion's (int32 count, one parameter-shaped momentum)."""
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(cautious(optax.scale_by_lion(b1=b1, b2=b2),
                                normalization=normalization, stacked=stacked),
                       *decay_then_lr(learning_rate, weight_decay, mask))


@register("cautious_adamw")
def _cautious_adamw_from_config(h, schedule, decay_mask):
    """config.optimizer.cautious_adamw, on every parameter; stacked layers masked and
    normalised layer by layer."""
    return cautious_adamw(schedule, mask=decay_mask, stacked=stacked_mask,
                          **CAUTIOUS_ADAMW.values(h))


@register("cautious_lion")
def _cautious_lion_from_config(h, schedule, decay_mask):
    """config.optimizer.cautious_lion, on every parameter; stacked layers masked and
    normalised layer by layer."""
    return cautious_lion(schedule, mask=decay_mask, stacked=stacked_mask,
                         **CAUTIOUS_LION.values(h))
