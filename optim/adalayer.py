"""Adalayer (Zhao, Morwani, Brandfonbrener, Vyas & Kakade 2024, "Deconstructing What Makes a
Good Optimizer for Language Models", arXiv 2407.07972, Section 5): Adam whose second moment is
one scalar per layer block instead of one per coordinate.

For a block (parameter leaf) with gradient g of n entries, step t (1-based):

    m <- b1 m + (1 - b1) g                          per coordinate, as Adam
    v <- b2 v + (1 - b2) sum(g^2) / n               ONE scalar for the block
    p <- p - lr_t (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay p)

Params selected by `per_coordinate` keep Adam's per-coordinate v <- b2 v + (1 - b2) g^2, so a
mask selecting everything is AdamW. The paper's finding is that Adam's adaptivity matters on the
last layer and the LayerNorm parameters ("Adalayer*": those two per coordinate, every other
layer one scalar): `adalayer_star_mask` selects them.

- A block is one parameter leaf: each weight matrix, bias, norm scale and embedding table is its
  own block; the (d, heads, head_dim) query/key/value kernels are one block each (all heads
  together), not one per head. The mean rather than the sum of g^2 keeps v on Adam's scale, so
  Adalayer's lr and eps match Adam's for a block of equal gradient entries.
- Tied embeddings: the table is also the last (unembedding) layer, so `adalayer_star_mask`
  makes it per-coordinate; with untied embeddings the input table is a plain block.

State (float32): m, 4 bytes per parameter; v, 4 bytes per parameter on per-coordinate params and
4 bytes per block elsewhere.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.adalayer import ADALAYER
from optim.masks import stacked_mask
from optim.registry import register


class ScaleByAdalayerState(NamedTuple):
    count: jax.Array  # int32, steps taken
    mu: Any           # first moment, like the params
    nu: Any           # second moment: a () scalar per block, or like the param (per coordinate)


def _path_names(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/").lower()


def adalayer_star_mask(params):
    """True on the params Adalayer* keeps per-coordinate: norm scales and biases (a path
    component containing "norm") and the last layer ("unembed", or the "embedding" table when
    the params have no "unembed", i.e. tied embeddings)."""
    paths = [_path_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    tied = not any("unembed" in p for p in paths)

    def per_coordinate(path, leaf) -> bool:
        name = _path_names(path)
        return "norm" in name or "unembed" in name or (tied and "embedding" in name)

    return jax.tree_util.tree_map_with_path(per_coordinate, params)


def _tree_of(spec, params):
    """A pytree of bools like `params` from `spec`: None (all False), a pytree, or a callable."""
    if spec is None:
        return jax.tree.map(lambda _: False, params)
    return spec(params) if callable(spec) else spec


def _block_mean_square(g, v):
    """The mean of g^2 over each block of the per-block second moment v: the whole tensor,
    or each layer of a stacked one (v then has one entry per layer)."""
    return jnp.mean(g * g, axis=tuple(range(v.ndim, g.ndim)))


@ADALAYER.defaults_of(exclude=("weight_decay", "star"))
def scale_by_adalayer(*, b1, b2, eps, per_coordinate=None,
                      stacked=None) -> optax.GradientTransformation:
    """Adalayer's direction m_hat / (sqrt(v_hat) + eps), without lr or weight decay. A leaf's
    second moment is per coordinate when its state `nu` has the leaf's shape, else per block:
    one scalar, or one per layer of a `stacked` leaf (a pytree of bools or a callable of the
    params marking stacks of layers along axis 0)."""

    def init_fn(params):
        coordinate, stacks = _tree_of(per_coordinate, params), _tree_of(stacked, params)
        return ScaleByAdalayerState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
            nu=jax.tree.map(lambda p, c, s: jnp.zeros(p.shape if c else p.shape[:s],
                                                      jnp.float32),
                            params, coordinate, stacks))

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        grads = jax.tree.map(lambda g: g.astype(jnp.float32), updates)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(
            lambda v, g: b2 * v + (1 - b2) * (g * g if v.shape == g.shape
                                              else _block_mean_square(g, v)),
            state.nu, grads)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        out = jax.tree.map(
            lambda m, v, u: (m / (jnp.sqrt(v.reshape(v.shape + (1,) * (m.ndim - v.ndim)))
                                  + eps)).astype(u.dtype),
            mu_hat, nu_hat, updates)
        return out, ScaleByAdalayerState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


@ADALAYER.defaults_of(exclude=("star",))
def adalayer(learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps, weight_decay,
             per_coordinate=None, mask=None, stacked=None) -> optax.GradientTransformation:
    """Adalayer with decoupled weight decay (module docstring).

    Args:
      learning_rate: a float or an optax schedule of the 0-based step count.
      b1, b2: decay rates of the first and second moments, in [0, 1).
      eps: added to sqrt(v_hat), outside the square root as in Adam.
      weight_decay: decoupled weight decay, p <- p - lr * weight_decay * p.
      per_coordinate: None (every leaf one block), a pytree of bools like the params, or a
        callable params -> such a pytree (e.g. `adalayer_star_mask`), True where a param keeps
        Adam's per-coordinate second moment.
      mask: optional pytree of bools (or callable params -> pytree) selecting the params
        weight decay applies to; None decays all.
      stacked: optional pytree of bools (or callable) marking stacks of layers along axis 0,
        each layer one block.
    """
    checks.learning_rate(learning_rate)
    for name, value in dict(b1=b1, b2=b2).items():
        checks.in_unit_interval(name, value)
    for name, value in dict(eps=eps, weight_decay=weight_decay).items():
        checks.nonnegative(name, value)
    return optax.chain(scale_by_adalayer(b1=b1, b2=b2, eps=eps, per_coordinate=per_coordinate,
                                         stacked=stacked),
                       *decay_then_lr(learning_rate, weight_decay, mask))


@register("adalayer")
def _adalayer_from_config(h, schedule, decay_mask):
    """config.optimizer.adalayer; star: Adalayer* (last layer and norms keep per-coordinate
    second moments, `adalayer_star_mask`), else one second moment per block everywhere."""
    return adalayer(schedule, per_coordinate=adalayer_star_mask if h.star else None,
                    mask=decay_mask, stacked=stacked_mask, **ADALAYER.values(h, exclude=("star",)))
