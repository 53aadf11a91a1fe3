r"""Scion: stochastic conditional gradient steps along norm-ball LMOs, one norm per layer.

Pethick, Xie, Antonakopoulos, Zhu, Silveti-Falls & Cevher 2025, "Training Deep Learning Models
with Norm-Constrained LMOs", arXiv:2502.07529, following the authors' reference PyTorch code
(github.com/LIONS-EPFL/scion, scion.py, class `Scion`) step for step, with the parameter groups
of their GPT example (examples/modded-nanogpt/train_gpt_scion.py; the README's "nanoGPT with
weight sharing").

The linear minimization oracle of a norm ball of radius rho is lmo(d) = argmin_{||x|| <= rho}
<d, x> = -rho * lmo_1(d). With momentum m (the reference's convention: the weight of the NEW
gradient, 1 - the usual beta) and learning rate gamma_t, one step of Scion is, per layer

    d     <- (1 - m) d + m g                                   (d_0 = 0; the paper's alpha = m)
    x     <- (1 - gamma_t) x - gamma_t rho lmo_1(d)            (SCG: Scion, constrained)
    x     <- x - gamma_t rho lmo_1(d)                          (uSCG: unconstrained Scion)

The constrained step is a convex combination of x and a point of the radius-rho ball, so the
ball is invariant (Section 3 relates the (1 - gamma) shrink to weight decay). lmo_1 is the
layer's norm's unit LMO, the reference's `Norm.lmo` (eps = 1e-8), written for a weight W of
shape (fan_out, fan_in) as PyTorch stores a Linear:

    Spectral   NS5(W) sqrt(fan_out / fan_in)          (RMS -> RMS operator norm; hidden layers)
    Sign       sign(W) / fan_in                        (max-entry norm; the output layer)
    ColNorm    W_:j / (||W_:j||_2 / sqrt(fan_out) [* fan_in] + eps)   (l_1 -> RMS; one-hot input)
    RowNorm    W_i: / (||W_i:||_2 [* sqrt(fan_in)] + eps)             (RMS -> l_inf)
    BiasRMS    b / (rms(b) + eps)                      (vectors: biases, norm scales)

([...]: the `normalized` variant; Sign's and RowNorm's default, not ColNorm's). NS5 is Keller
Jordan's quintic Newton-Schulz iteration as the reference's `zeropower_via_newtonschulz5`: cast
to bfloat16, transpose a tall matrix, X <- X / (||X||_F + 1e-7), 5 x {A = X X^T; B = b A + c A A;
X <- a X + B X} with (a, b, c) = (3.4445, -4.7750, 2.0315), transpose back; the reference then
multiplies by sqrt(fan_out / fan_in) and by rho still in bfloat16 and adds the result to the
float32 parameters.

The reference's GPT example (weight sharing: the embedding IS the output layer) puts the hidden
matrices in a Spectral group of radius 50 and the tied embedding / lm_head in a Sign group of
radius 50 x 60 = 3000, with lr = 2^-12, momentum = 0.1, constrained. `default_lmos` is that
assignment on optiscale's tree, with the cases the example lacks filled from the other examples:

    hidden matrices (attn q/k/v/out, mlp up/gate/down)   Spectral, radius `scale` (50)
    tied "embedding" (vocab, d) (optiscale's default)      Sign / d, radius `output_scale` (3000)
    untied "unembed"/"kernel" (d, vocab)                   Sign / d, radius `output_scale`
    untied "embedding" (vocab, d), the input layer         ColNorm (the reference's
        ColNorm(transpose=True): each token's row to RMS 1, the l_1 -> RMS norm of one-hot
        inputs) or Sign (unnormalized, shallow-nanogpt's default; `input_norm`), radius
        `input_scale` (50; shallow-nanogpt sweeps Sign, Spectral and ColNorm there)
    norm scales (d,) and other vectors                     BiasRMS, radius `scale` (as the
        DeiT and airbench examples treat LayerNorm / BatchNorm parameters)

Layout: optiscale's kernels are (in, out), the transpose of PyTorch's (out, in) weights, so here
fan_in = kernel.shape[-2], fan_out = kernel.shape[-1]; ColNorm normalizes each row of a kernel
(over axis -1), RowNorm each column (over axis -2); an embedding table (vocab, d) is an (in, out)
kernel of one-hot inputs (ColNorm over d per token, as the reference's transpose=True), and the
tied table, in its role as output layer, a PyTorch-layout (out, in) weight (`Lmo.transposed`).
NS5 of W^T is NS5(W)^T exactly (both iterate on the same wide matrix), so only the scales and
the axes of the column / row norms depend on the layout. A stack of scanned layers (L, in, out)
gets one LMO per layer (leading batch axes; every matrix is batched, so stacked == unrolled).

optiscale's decoupled weight decay is the constrained shrink: optax.add_decayed_weights(wd)
before the learning rate gives x <- x - gamma_t (rho lmo_1(d) + wd x) = (1 - gamma_t wd) x -
gamma_t rho lmo_1(d), the reference's step at weight_decay = 1 (the default; 0: unconstrained;
in between the ball of radius rho / wd is invariant). It applies to the parameters `mask`
selects: the reference shrinks every parameter of the optimizer, optiscale's config by default
only the hidden matrices (optimizer.groups.embeddings.weight_decay=True adds the embeddings).

`ns_dtype` "bfloat16" is the reference's arithmetic: the iteration and the two scalings in
bfloat16, each elementwise product and sum rounded to bfloat16 with float32 scalars and float32
accumulation (PyTorch's eager CPU semantics: the coefficients are not rounded to bfloat16, as
optax.contrib's orthogonalize_via_newton_schulz would round them on a bfloat16 input, which
moves the iterate by ~6%; hence the iteration is written here); "param" runs the same iteration
in the momentum's dtype (float32, or float64 in tests), as optiscale's Muon does.

ScionLight (the reference's memory-saving variant) keeps the averaged gradient in p.grad,
d <- (1 - m) d + g, i.e. d / m: the same steps up to the LMOs' eps. In optax a gradient
buffer cannot be reused, so it is not a separate transform here. State: the momentum buffer d,
one float per parameter entry (none when momentum = 1).
"""
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.scion import INPUT_NORMS, NS_DTYPES, SCION
from optim.masks import is_embedding, layer_ndim, path_name, stacked_mask
from optim.registry import register

NORMS = ("spectral", "sign", "colnorm", "rownorm", "bias_rms")
NS_COEFFS = (3.4445, -4.7750, 2.0315)  # the reference's (a, b, c)
NS_EPS = 1e-7  # added to ||X||_F before the iteration
EPS = 1e-8  # added to the RMS of ColNorm, RowNorm and BiasRMS
_NORMALIZED = {"spectral": True, "sign": True, "colnorm": False, "rownorm": True}


class Lmo(NamedTuple):
    """One parameter's LMO: the reference's `norm` (NORMS, its class in lower case; "bias_rms"
    is BiasRMS), its group's `scale` (the radius rho) and the norm's `normalized` flag (None:
    the reference's default: True but for ColNorm). `transposed`: the parameter is stored
    (fan_out, fan_in) as a PyTorch weight (the tied embedding as output layer), not as an
    (in, out) kernel."""
    norm: str
    scale: float
    normalized: bool | None = None
    transposed: bool = False


class ScaleByScionState(NamedTuple):
    """momentum: the averaged gradient d, like the params (None when momentum = 1)."""
    momentum: Any


def default_lmos(tree, *, scale, output_scale, input_scale, input_norm):
    """The GPT example's LMO of every leaf of optiscale's parameter tree (module docstring):
    the embedding is the output layer when the tree has no "unembed" leaf (tied)."""
    checks.one_of("input_norm", input_norm, INPUT_NORMS)
    named = jax.tree_util.tree_leaves_with_path(tree)
    tied = not any("unembed" in path_name(path).lower() for path, _ in named)

    def lmo(path, leaf):
        if "unembed" in path_name(path).lower():
            return Lmo("sign", output_scale)
        if is_embedding(path):
            if tied:
                return Lmo("sign", output_scale, transposed=True)
            return (Lmo("colnorm", input_scale, normalized=False) if input_norm == "colnorm"
                    else Lmo("sign", input_scale, normalized=False))
        rank = layer_ndim(path, leaf)
        if rank == 2:
            return Lmo("spectral", scale)
        if rank <= 1:
            return Lmo("bias_rms", scale)
        raise ValueError(f"Scion's default LMOs cover matrices and vectors; {path_name(path)} "
                         f"has rank {rank} per layer: pass `lmos` for it")

    return jax.tree_util.tree_map_with_path(lmo, tree)


# ----------------------------------------------------------------------- reference arithmetic
# Elementwise steps as PyTorch's eager kernels compute them: in float32 (or the dtype, if wider)
# with unrounded Python scalars, rounded to the tensor's dtype after every operation.

def _wide(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _times(c: float, x):
    return (c * x.astype(_wide(x.dtype))).astype(x.dtype)


def _plus(x, y):
    return (x.astype(_wide(x.dtype)) + y.astype(_wide(x.dtype))).astype(x.dtype)


def _matmul(x, y):
    return jnp.matmul(x, y, preferred_element_type=_wide(x.dtype)).astype(x.dtype)


def newton_schulz(x, steps: int, dtype):
    """The reference's zeropower_via_newtonschulz5 of every matrix in the last two axes of x
    (leading axes: a batch), computed in `dtype` (module docstring)."""
    x = x.astype(dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    wide = _wide(dtype)
    norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(wide)), axis=(-2, -1), keepdims=True))
    denominator = (norm.astype(dtype).astype(wide) + NS_EPS).astype(dtype)
    x = (x.astype(wide) / denominator.astype(wide)).astype(dtype)
    a, b, c = NS_COEFFS
    for _ in range(steps):
        gram = _matmul(x, jnp.swapaxes(x, -1, -2))
        poly = _plus(_times(b, gram), _matmul(_times(c, gram), gram))
        x = _plus(_times(a, x), _matmul(poly, x))
    return jnp.swapaxes(x, -1, -2) if tall else x


def lmo_step(lmo: Lmo, d, *, batch_ndim: int, ns_steps: int, ns_dtype: str):
    """rho * lmo_1(d) of one parameter (d with `batch_ndim` leading layer axes), in the
    reference's order of operations; the result is in d's dtype."""
    checks.one_of("norm", lmo.norm, NORMS)
    normalized = _NORMALIZED.get(lmo.norm) if lmo.normalized is None else lmo.normalized
    x = d if batch_ndim else d[None]  # every layer batched alike: stacked == unrolled
    if lmo.norm == "bias_rms":
        if x.ndim - 1 > 1:
            raise ValueError(f"BiasRMS takes vectors; got a tensor of shape {d.shape}")
        axes = tuple(range(1, x.ndim))
        out = x / (jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True)) + EPS)
    else:
        if x.ndim != 3:
            raise ValueError(f"the {lmo.norm} LMO takes matrices; got a tensor of shape "
                             f"{d.shape} ({batch_ndim} layer axes)")
        if lmo.transposed:
            x = jnp.swapaxes(x, -1, -2)
        fan_in, fan_out = x.shape[-2:]
        if lmo.norm == "spectral":
            out = newton_schulz(x, ns_steps, jnp.bfloat16 if ns_dtype == "bfloat16" else x.dtype)
            out = _times(math.sqrt(fan_out / fan_in) if normalized else math.sqrt(fan_out), out)
        elif lmo.norm == "sign":
            out = (1 / fan_in) * jnp.sign(x) if normalized else jnp.sign(x)
        elif lmo.norm == "colnorm":  # PyTorch's columns, one per input: the kernel's rows
            rms = (1 / math.sqrt(fan_out)) * jnp.sqrt(jnp.sum(jnp.square(x), -1, keepdims=True))
            out = x / ((rms * fan_in if normalized else rms) + EPS)
        else:  # rownorm; PyTorch's rows, one per output: the kernel's columns
            norm = jnp.sqrt(jnp.sum(jnp.square(x), -2, keepdims=True))
            out = x / ((norm * math.sqrt(fan_in) if normalized else norm) + EPS)
        if lmo.transposed:
            out = jnp.swapaxes(out, -1, -2)
    out = _times(lmo.scale, out)
    return (out if batch_ndim else out[0]).astype(d.dtype)


@SCION.defaults_of(exclude=("scale", "output_scale", "input_scale", "input_norm",
                            "weight_decay"))
def scale_by_scion(lmos, *, momentum, ns_steps, ns_dtype,
                   stacked=None) -> optax.GradientTransformation:
    """Scion's direction rho * lmo_1(d) (module docstring, without learning rate and the
    constrained shrink).

    Args:
      lmos: a pytree of `Lmo` like the params, or a callable of the params returning one
        (e.g. functools.partial(default_lmos, ...)).
      momentum: the new gradient's weight in d <- (1 - momentum) d + momentum g, in (0, 1];
        1 keeps no buffer.
      ns_steps: Newton-Schulz iterations of the Spectral LMO.
      ns_dtype: "bfloat16" (the reference's arithmetic) or "param" (the momentum's dtype).
      stacked: a pytree of bools like the params, or a callable of them (None: none), marking
        stacks of layers along axis 0, each layer its own matrix.
    """
    checks.positive("momentum", momentum)
    if not momentum <= 1:
        raise ValueError(f"momentum={momentum!r} must lie in (0, 1] (the weight of the new "
                         "gradient; 1: no momentum)")
    checks.integer("ns_steps", ns_steps)
    checks.one_of("ns_dtype", ns_dtype, NS_DTYPES)
    if lmos is None:
        raise ValueError("scale_by_scion needs `lmos` (e.g. functools.partial(default_lmos, "
                         "...)); `scion` supplies the GPT example's")

    def resolve(option, tree, default):
        value = option(tree) if callable(option) else option
        return jax.tree.map(lambda _: default, tree) if value is None else value

    def init_fn(params):
        for lmo in jax.tree.structure(params).flatten_up_to(resolve(lmos, params, None)):
            if not isinstance(lmo, Lmo):
                raise TypeError(f"`lmos` must hold an Lmo per parameter; got {lmo!r}")
            checks.one_of("norm", lmo.norm, NORMS)
        buffer = None if momentum == 1 else jax.tree.map(jnp.zeros_like, params)
        return ScaleByScionState(momentum=buffer)

    def update_fn(updates, state, params=None):
        del params
        if momentum == 1:
            averaged = updates
        else:
            averaged = jax.tree.map(
                lambda d, g: (1 - momentum) * d + momentum * g.astype(d.dtype),
                state.momentum, updates)
        treedef = jax.tree.structure(updates)
        columns = zip(*(treedef.flatten_up_to(tree) for tree in (
            updates, averaged, resolve(lmos, updates, None), resolve(stacked, updates, False))))
        out = [lmo_step(lmo, d, batch_ndim=int(bool(flag)), ns_steps=ns_steps,
                        ns_dtype=ns_dtype).astype(g.dtype)
               for g, d, lmo, flag in columns]
        return treedef.unflatten(out), ScaleByScionState(
            momentum=None if momentum == 1 else averaged)

    return optax.GradientTransformation(init_fn, update_fn)


@SCION.defaults_of()
def scion(learning_rate: optax.ScalarOrSchedule, *, momentum, scale, output_scale,
          input_scale, input_norm, ns_steps, ns_dtype, weight_decay, lmos=None, mask=None,
          stacked=None) -> optax.GradientTransformation:
    """Scion (Pethick et al. 2025) with the GPT example's defaults (optim/hparams/scion.py):
    `scale_by_scion`, the constrained shrink as decoupled weight decay, the learning rate.
    `update` needs `params` (for the shrink). Apply the output with optax.apply_updates.

    Args:
      learning_rate: gamma, a float or a schedule of the 0-based call count.
      momentum, ns_steps, ns_dtype, stacked: as in `scale_by_scion`.
      scale, output_scale, input_scale, input_norm: the radii (and the untied input layer's
        LMO) of `default_lmos`, used when `lmos` is None.
      weight_decay: x <- (1 - gamma wd) x - gamma rho lmo_1(d): 1 is the reference's
        (constrained) Scion, 0 unconstrained Scion.
      lmos: a pytree of `Lmo` like the params, or a callable of them (None: default_lmos).
      mask: the parameters the shrink applies to (optax's `mask`; None: all, as the
        reference).
    """
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    for name, value in (("scale", scale), ("output_scale", output_scale),
                        ("input_scale", input_scale)):
        checks.positive(name, value)
    checks.one_of("input_norm", input_norm, INPUT_NORMS)
    if lmos is None:
        def lmos(tree):
            return default_lmos(tree, scale=scale, output_scale=output_scale,
                                input_scale=input_scale, input_norm=input_norm)
    return optax.chain(
        scale_by_scion(lmos, momentum=momentum, ns_steps=ns_steps, ns_dtype=ns_dtype,
                       stacked=stacked),
        *decay_then_lr(learning_rate, weight_decay, mask))


@register("scion", supports_mup=False)
def _scion_from_config(h, schedule, decay_mask):
    """config.optimizer.scion: Scion on every parameter (no AdamW part) with the GPT example's
    LMOs (default_lmos), each layer of a stack its own matrix; the constrained shrink
    (weight_decay) on the parameters `decay_mask` selects."""
    return scion(schedule, mask=decay_mask, stacked=stacked_mask, **SCION.values(h))
