r"""Dion: DIstributed OrthoNormalized updates.

Ahn, Xu, Abreu, Langford et al. 2025, "Dion: Distributed Orthonormalized Updates",
arXiv:2504.05295, following the authors' single-device reference (github.com/microsoft/dion,
dion/dion_reference.py, class Dion, exported as DionReference: "closely follow[s] the
algorithms as described in our Dion paper"; dion/dion.py is the batched, communication-
overlapped version of the same update, dion_simple.py a simplified illustration without the
orientation rule or the zero guard) step for step.

Algorithm 1 of the paper, for a weight X (m x n, PyTorch's (out, in)) with gradient G, momentum
M (m x n, zero at first), right factor Q (n x r, random at first) and rank r:

    B = M + G                                        (the momentum buffer takes the gradient)
    P = Orthonormalize(B Q),   R = B^T P             (one power-iteration step from Q: B ~ P R^T)
    M <- B - (1 - mu) P R^T                          (error feedback: = mu B + (1 - mu)(B - P R^T))
    Q <- ColumnNormalize(R)                          (R's columns / (their norms + eps))
    X <- X (1 - lr wd) - lr sqrt(m / n) P Q^T        (decoupled weight decay, then the update)

P Q^T is a rank-r matrix whose r singular values are all 1 (up to the normalisation), an
orthonormal update as Muon's but from a warm-started power iteration instead of Newton-Schulz,
and what the rank-r approximation misses stays in M (M then decays by mu only where it was
captured). r = rank_fraction * min(m, n), rounded up to a multiple of rank_multiple_of.

What the reference does besides, and this module with it:
- Orientation: the reference transposes a wide matrix (out < in) so that the power iteration
  runs on a tall B (B = M^T, Q on the output side); a square one is not transposed. optiscale's
  kernels are (in, out), the transpose of PyTorch's weights, so the same rule reads: B = M^T
  (Q on the input side, axis 0) when out >= in, else B = M (Q on the output side, axis 1); Q is
  always (min(in, out), r). The scale is sqrt(out / in) either way.
- Orthonormalize: a Householder QR in float32 (its qr_method "qr"; the default "rcqr", a
  randomized Cholesky QR for tall P, gives the same Q up to the signs of its columns in exact
  arithmetic, and the update P Q^T and the feedback P R^T do not depend on those signs), the
  result cast back to M's dtype; ColumnNormalize in float32 too.
- A B that is all zero (no gradient yet) gives P = 0 and keeps Q (column-normalised): the
  reference's fix_all_zero_or_nan (NaN from the QR of a zero matrix replaced by 0).
- The state: M in the parameter's dtype and layout (sharded like it), Q in the parameter's
  dtype. The reference draws the initial Q with torch.randn per matrix; here it is
  jax.random.normal from `seed`, one draw per Q shape (so every layer of a stack and the
  unrolled layers start alike; the power iteration needs only a Q0 in general position), or
  `initial_q` (what the tests inject: the reference's own draws).
- Stacked (scanned) layers (axis 0 of a parameter that `stacked` marks): each layer its own
  matrix, M and Q (vmap).

The embeddings, norms and biases go to the reference's scalar optimizer (its README: Dion only
for hidden weight matrices): AdamW (the authors' 160M config) or Lion (train.py's default,
with the untied LM head at lr / sqrt(d_in)), with the groups' betas of train.py (0.95, 0.98)
and the same base lr ("no LR adjustment for embedding parameters").

Written as optax writes its optimizers: `scale_by_dion` is the direction sqrt(out / in) P Q^T,
chained with optax's decoupled weight decay (on the parameters before the step, as the
reference's X.mul_(1 - lr wd)) and the learning rate.
"""
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.dion import DION, SCALAR_OPTS
from optim.hparams.soap import PRECISIONS
from optim.masks import (
    matrices_and_rest,
    path_name,
    scale_by_multipliers,
    stack_flags,
    stacked_mask,
)
from optim.registry import register
from optim.schedules import scaled_learning_rate

_PRECISION = dict(zip(PRECISIONS, (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGH,
                                   jax.lax.Precision.DEFAULT)))
_REST = ("scalar_opt", "rest_b1", "rest_b2", "rest_lr_multiplier")


class DionState(NamedTuple):
    """Dion's state. `q` holds per parameter a pair, one entry per axis of the (per-layer)
    matrix: Q, (side, r) or (layers, side, r), on the axis it lives on (0 when out >= in, else
    1), and None on the other."""
    momentum: Any  # M, like the params
    q: Any  # the right factors Q

    @staticmethod
    def factor_param_axis(field: str, index: tuple) -> int | None:
        """Sharding declaration (lm/train/sharding.py): Q's rows belong to the parameter axis
        it lives on (the trainer splits the rows of Q, (side, r), like that axis)."""
        return index[0] if field == "q" else None


def q_axis(shape) -> int:
    """The axis of an (in, out) kernel that Q lives on: 0 (the input side; the reference's
    untransposed B = M of a PyTorch (out, in) weight) when out >= in, else 1."""
    return 0 if shape[1] >= shape[0] else 1


def rank(shape, rank_fraction: float, rank_multiple_of: int) -> int:
    """r = rank_fraction * min(shape), rounded up to a multiple of rank_multiple_of, at most
    min(shape) (the reference's _init_opt_state_dion, in its order of operations)."""
    r = rank_fraction * min(shape)
    r = rank_multiple_of * math.ceil(r / rank_multiple_of)
    return min(r, *shape)


def _orthonormalize(p):
    """The reference's orthogonalize (qr_method "qr"): Q of a Householder QR in float32."""
    return jnp.linalg.qr(p.astype(jnp.float32))[0].astype(p.dtype)


def _matrix_update(g, m, q, mu, eps, power_iters, precision):
    """(direction sqrt(out / in) P Q^T, new M, new Q) of one (in, out) kernel."""
    dot = lambda a, b: jnp.matmul(a, b, precision=precision)  # noqa: E731
    transpose = q_axis(g.shape) == 0
    m = m + g.astype(m.dtype)
    b = m.T if transpose else m  # B = M of the reference's (out, in) weight, or its M^T
    q_init = q.astype(m.dtype)
    r = q_init
    for _ in range(power_iters):
        p = _orthonormalize(dot(b, r))
        r = dot(b.T, p)
    empty = jnp.all(m == 0)
    p = jnp.where(empty, 0, jnp.nan_to_num(p))
    r = jnp.where(empty, q_init, jnp.nan_to_num(r))
    b = b - (1 - mu) * dot(p, r.T)
    r32 = r.astype(jnp.float32)
    q_new = (r32 / (jnp.linalg.norm(r32, axis=0, keepdims=True) + eps)).astype(p.dtype)
    direction = math.sqrt(g.shape[1] / g.shape[0]) * dot(p, q_new.T)
    if transpose:
        direction, b = direction.T, b.T
    return direction.astype(g.dtype), b, q_new.astype(q.dtype)


@DION.defaults_of(exclude=("weight_decay",) + _REST)
def scale_by_dion(*, mu, rank_fraction, rank_multiple_of, power_iters, eps, seed, precision,
                  stacked=None, initial_q=None) -> optax.GradientTransformation:
    """Dion's direction (the module docstring, without learning rate and weight decay):
    sqrt(out / in) P Q^T per (in, out) matrix; every leaf must be one (per layer if stacked).

    Args:
      mu: momentum decay; what the rank-r approximation misses is kept in M undecayed.
      rank_fraction: r / min(in, out), in (0, 1].
      rank_multiple_of: r rounded up to a multiple of this.
      power_iters: power-iteration steps per update, each from the last (1 in the paper).
      eps: added to R's column norms.
      seed: the initial Q's: one jax.random.normal draw per Q shape (side, r).
      precision: matmul precision of the power iteration ("highest": float32 as the
        reference).
      stacked: a pytree of bools like the params, or a callable of them (None: none), marking
        stacks of layers along axis 0, each layer its own matrix.
      initial_q: None, or a dict from a parameter's path name (optim.masks.path_name, e.g.
        "block_0/attn/query/kernel") to its initial Q, (min(in, out), r) (a stacked one's
        (layers, min(in, out), r)), instead of the seeded draw.
    """
    checks.in_unit_interval("mu", mu)
    if not 0 < rank_fraction <= 1:
        raise ValueError(f"rank_fraction={rank_fraction!r} must lie in (0, 1]")
    checks.integer("rank_multiple_of", rank_multiple_of)
    checks.integer("power_iters", power_iters)
    checks.positive("eps", eps)
    checks.integer("seed", seed, minimum=0)
    checks.one_of("precision", precision, PRECISIONS)
    matmul_precision = _PRECISION[precision]
    given = dict(initial_q or {})

    def matrix_shape(path, p, is_stacked):
        shape = p.shape[1:] if is_stacked else p.shape
        if len(shape) != 2:
            raise ValueError(f"Dion updates matrices, but {path_name(path)} is {len(shape)}-D "
                             f"{'per layer ' if is_stacked else ''}(shape {p.shape}); give "
                             "it to another optimizer (optim.masks.matrices_and_rest)")
        return shape

    def init_q(path, p, is_stacked):
        shape = matrix_shape(path, p, is_stacked)
        axis, r = q_axis(shape), rank(shape, rank_fraction, rank_multiple_of)
        lead = p.shape[:1] if is_stacked else ()
        side = shape[axis]
        name = path_name(path)
        if name in given:
            q = jnp.asarray(given[name], p.dtype)
            if q.shape != lead + (side, r):
                raise ValueError(f"initial_q[{name!r}] has shape {q.shape}; {name} {p.shape} "
                                 f"needs {lead + (side, r)}")
        else:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), side), r)
            q = jnp.broadcast_to(jax.random.normal(key, (side, r), p.dtype), lead + (side, r))
        return (q, None) if axis == 0 else (None, q)

    def init_fn(params):
        unknown = set(given) - {path_name(path) for path, _ in
                                jax.tree_util.tree_leaves_with_path(params)}
        if unknown:
            raise ValueError(f"initial_q names {sorted(unknown)}, not parameters of this tree")
        return DionState(momentum=jax.tree.map(jnp.zeros_like, params),
                         q=jax.tree_util.tree_map_with_path(init_q, params,
                                                            stack_flags(stacked, params)))

    def update_fn(updates, state, params=None):
        del params
        treedef = jax.tree.structure(updates)
        flags = treedef.flatten_up_to(stack_flags(stacked, updates))
        qs = treedef.flatten_up_to(state.q)
        out, momentum, q = [], [], []
        for g, m, pair, is_stacked in zip(jax.tree.leaves(updates),
                                          jax.tree.leaves(state.momentum), qs, flags):
            axis = q_axis(g.shape[1:] if is_stacked else g.shape)

            def one(g, m, q_):
                return _matrix_update(g, m, q_, mu, eps, power_iters, matmul_precision)
            direction, m_new, q_new = (jax.vmap(one) if is_stacked else one)(g, m, pair[axis])
            out.append(direction)
            momentum.append(m_new)
            q.append((q_new, pair[1]) if axis == 0 else (pair[0], q_new))
        return treedef.unflatten(out), DionState(treedef.unflatten(momentum),
                                                 treedef.unflatten(q))

    return optax.GradientTransformation(init_fn, update_fn)


@DION.defaults_of(exclude=_REST)
def dion(learning_rate: optax.ScalarOrSchedule, *, weight_decay, mask=None, stacked=None,
         initial_q=None, **direction) -> optax.GradientTransformation:
    """Dion on matrices, with the reference's defaults (optim/hparams/dion.py): `scale_by_dion`
    with the `direction` hyperparameters (and `stacked`, `initial_q`), decoupled weight decay
    x <- x (1 - lr_t wd) of the parameters `mask` selects (None: all; optax's `mask`) and the
    learning rate (a float or a schedule of the 0-based update count). Every leaf must be a
    matrix (per layer if stacked); the registered "dion" gives the rest to AdamW or Lion.
    `update` needs `params` when weight_decay > 0."""
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(
        scale_by_dion(stacked=stacked, initial_q=initial_q, **direction),
        *decay_then_lr(learning_rate, weight_decay, mask))


def lm_head_multipliers(tree):
    """Lion's lr multiplier per parameter (the reference's opt_utils.lm_head_lr_scale): 1 /
    sqrt(d_in) on an untied LM head ("unembed", an (in, vocab) kernel), 1 elsewhere (a tied
    embedding is an embedding table: base lr, as the reference's nn.Embedding group)."""
    def multiplier(path, leaf):
        unembed = "unembed" in path_name(path).lower() and jnp.ndim(leaf) == 2
        return 1 / math.sqrt(leaf.shape[0]) if unembed else 1.0
    return jax.tree_util.tree_map_with_path(multiplier, tree)


def scalar_optimizer(scalar_opt: str, learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps,
                     weight_decay, mask=None) -> optax.GradientTransformation:
    """The reference's optimizer of the non-matrix parameters: AdamW(b1, b2, eps), or Lion(b1,
    b2) with the LM head at lr / sqrt(d_in); decoupled weight decay on the `mask`ed ones."""
    checks.one_of("scalar_opt", scalar_opt, SCALAR_OPTS)
    if scalar_opt == "adamw":
        return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=mask)
    return optax.chain(optax.lion(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay,
                                  mask=mask),
                       scale_by_multipliers(lm_head_multipliers))


@register("dion", supports_mup=False)
def _dion_from_config(h, schedule, decay_mask):
    """config.optimizer.dion: Dion on the hidden matrices (each stacked layer its own), the
    scalar optimizer (AdamW or Lion, rest_b1, rest_b2, eps) at lr x rest_lr_multiplier on
    embeddings, norms and biases; both decay the parameters `decay_mask` selects."""
    matrices = dion(schedule, mask=decay_mask, stacked=stacked_mask,
                    **DION.values(h, exclude=_REST))
    rest = scalar_optimizer(h.scalar_opt, scaled_learning_rate(schedule, h.rest_lr_multiplier),
                            b1=h.rest_b1, b2=h.rest_b2, eps=h.eps,
                            weight_decay=h.weight_decay, mask=decay_mask)
    return matrices_and_rest(matrices, rest)
