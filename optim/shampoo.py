"""Shampoo with grafting (Gupta, Koren & Singer 2018, "Shampoo: Preconditioned Stochastic Tensor
Optimization", Algorithm 2), in the practical form of Anil et al. 2020 ("Scalable Second Order
Optimization") and Distributed Shampoo (Shi et al. 2023, arXiv 2309.06497), the Shampoo baseline
of SOAP (Vyas et al. 2024).

For a parameter with gradient G_t of order k, step t (1-based), every preconditioned axis i:

    L_i <- b2 L_i + (1 - b2) G_(i) G_(i)^T        G_(i): G unfolded along axis i; b2 = 1
                                                   is the paper's plain sum L_i += G_(i) G_(i)^T
    S    = G x_1 R_1 ... x_k R_k,   R_i = (L_i + delta_i I)^(-1/e)
    D    = |graft(G)| / |S| * S                     layerwise grafting (Agarwal et al. 2020)
    m   <- b1 m + (1 - b1) D,   update = m / (1 - b1^t)
    p   <- p - lr_t (update + weight_decay p)

- Preconditioned axes: those of size <= max_precond_dim, of parameters with ndim >= 2. Vectors
  and scalars (norm scales, biases) and parameters with no small enough axis take the graft
  direction alone, D = graft(G). e = 2 * (number of preconditioned axes) unless `exponent` is
  given: Algorithm 2's 1/(2k) root, L^(-1/4) G R^(-1/4) for a matrix.
- R_i comes from an eigendecomposition of L_i in float32 (`jnp.linalg.eigh`, eigenvalues
  clamped at 0) with damping delta_i = matrix_eps * lambda_max(L_i) + eps: relative, so the
  direction is invariant to the scale of the gradients (grafting sets the step size), plus an
  absolute eps that keeps R_i finite for an all-zero statistic. The EMA is not bias-corrected:
  its scale does not change S.
- L_i is updated at steps t = 1 + n * statistics_frequency (every step by default). R_i is
  recomputed at steps t = start_preconditioning_step + n * precondition_frequency and cached
  in the state; before start_preconditioning_step, D = graft(G).
- graft="adam": the bias-corrected RMSProp direction of Adam without momentum,
  G / (sqrt(v / (1 - b2^t)) + graft_eps), v <- b2 v + (1 - b2) G^2 (with b2 = 1, AdaGrad's
  v += G^2, no bias correction); graft="sgd": G. The norms are per parameter (per layer).
- Momentum b1 is an EMA of the grafted direction D (Distributed Shampoo's default, momentum on
  the preconditioned gradient), bias-corrected.

State (float32): momentum, the Adam graft's second moment (graft="adam"), and per preconditioned
axis of size n an n x n statistic and its cached root: 4 + 4 (adam) bytes per parameter plus
8 (m^2 + n^2) bytes per m x n matrix with both axes preconditioned.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.shampoo import GRAFTS, SHAMPOO
from optim.masks import matrices_and_rest, stack_flags, stacked_mask
from optim.registry import register
from optim.schedules import scaled_learning_rate


class ScaleByShampooState(NamedTuple):
    count: jax.Array  # int32, steps taken
    mu: Any           # momentum of the grafted direction, like the params
    nu: Any           # Adam graft's second moment, like the params; None for graft="sgd"
    stats: Any        # per param: a tuple with one entry per axis i: the (n_i, n_i) statistic
                      # L_i, or a (0,) placeholder for an axis that is not preconditioned
    roots: Any        # per param: the cached (L_i + delta_i I)^(-1/e), same shapes as stats

    @staticmethod
    def factor_param_axis(field: str, index: tuple) -> int | None:
        """Sharding declaration (lm/train/sharding.py): entry i of a parameter's `stats` / `roots`
        tuple is the factor of the parameter's axis i."""
        return index[0] if field in ("stats", "roots") else None


def precond_axes(shape, max_precond_dim: int) -> tuple[int, ...]:
    """The axes Shampoo preconditions: sizes <= max_precond_dim, of tensors with ndim >= 2."""
    if len(shape) < 2:
        return ()
    return tuple(i for i, n in enumerate(shape) if n <= max_precond_dim)


def _unfolded_gram(g, axis):
    """G_(i) G_(i)^T: contract g with itself over every axis but `axis`."""
    others = [a for a in range(g.ndim) if a != axis]
    return jnp.tensordot(g, g, axes=(others, others))


def _mode_product(g, matrix, axis):
    """g x_axis matrix: multiply g's `axis` by the (symmetric) matrix."""
    return jnp.moveaxis(jnp.tensordot(matrix, g, axes=([1], [axis])), 0, axis)


def _inverse_root(stat, exponent, matrix_eps, eps):
    """(L + (matrix_eps * lambda_max + eps) I)^(-1/exponent) for symmetric PSD L, in float32."""
    w, v = jnp.linalg.eigh(stat.astype(jnp.float32))
    w = jnp.maximum(w, 0.0)
    w = w + matrix_eps * w[-1] + eps  # eigh returns eigenvalues in ascending order
    return (v * w ** (-1.0 / exponent)) @ v.T


def _init_state(params, graft: str, max_precond_dim: int, flags) -> ScaleByShampooState:
    """Zero moments and statistics, identity roots (float32); a stacked parameter (`flags`)
    has one of each per layer, stacked along axis 0."""
    def per_axis(p, stacked, factor):
        lead = p.shape[:1] if stacked else ()
        shape = p.shape[len(lead):]
        axes = precond_axes(shape, max_precond_dim)
        return tuple(jnp.broadcast_to(factor(n), lead + (n, n)) if i in axes
                     else jnp.zeros(lead + (0,), jnp.float32) for i, n in enumerate(shape))

    zeros = lambda p: jnp.zeros(p.shape, jnp.float32)  # noqa: E731
    return ScaleByShampooState(
        count=jnp.zeros([], jnp.int32),
        mu=jax.tree.map(zeros, params),
        nu=jax.tree.map(zeros, params) if graft == "adam" else None,
        stats=jax.tree.map(lambda p, f: per_axis(p, f, lambda n: jnp.zeros((n, n), jnp.float32)),
                           params, flags),
        roots=jax.tree.map(lambda p, f: per_axis(p, f, lambda n: jnp.eye(n, dtype=jnp.float32)),
                           params, flags))


def _per_layer(fn, stacked: bool, loop: bool = False):
    """fn of one layer's tensors, mapped over the layers of a stacked parameter: vmapped, or
    with `loop` one layer after another (lax.map: batched eigendecompositions inside lax.cond
    hang XLA's CPU runtime, as SOAP's notes say)."""
    if not stacked:
        return fn
    if loop:
        return lambda *args: jax.lax.map(lambda xs: fn(*xs), args)
    return jax.vmap(fn)


def _grafted(g, graft_dir, roots, axes, preconditioning):
    """D = |graft(G)| / |S| * S with S = G x_i R_i over the preconditioned `axes` (graft(G)
    alone without any, or before preconditioning starts)."""
    if not axes:
        return graft_dir
    s = g
    for i in axes:
        s = _mode_product(s, roots[i], i)
    s_norm = jnp.linalg.norm(s)
    unit = s / jnp.where(s_norm > 0, s_norm, 1.0)  # s = 0 stays 0
    return jnp.where(preconditioning, jnp.linalg.norm(graft_dir) * unit, graft_dir)


@SHAMPOO.defaults_of(exclude=("weight_decay", "exponent", "rest_lr_multiplier"))
def scale_by_shampoo(*, b1, b2, eps, precondition_frequency, start_preconditioning_step,
                     max_precond_dim, graft, graft_eps, matrix_eps, statistics_frequency,
                     exponent=None, stacked=None) -> optax.GradientTransformation:
    """The Shampoo direction with grafting and momentum, without lr or weight decay; see the
    module docstring for the algorithm and `shampoo` for the arguments."""
    stat_weight = 1.0 if b2 == 1 else 1.0 - b2  # b2 = 1: the paper's sum (AdaGrad)

    def axes_of(p):
        return precond_axes(p.shape, max_precond_dim)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        grads = jax.tree.map(lambda g: g.astype(jnp.float32), updates)
        flags = stack_flags(stacked, grads)

        def layer_stats(g, ls):
            return tuple(b2 * l + stat_weight * _unfolded_gram(g, i) if l.ndim == 2 else l
                         for i, l in enumerate(ls))

        def new_stats():
            return jax.tree.map(lambda g, ls, f: _per_layer(layer_stats, f)(g, ls),
                                grads, state.stats, flags)

        stats = jax.lax.cond((count - 1) % statistics_frequency == 0, new_stats,
                             lambda: state.stats)

        def new_roots():
            def leaf_roots(g, ls):
                e = exponent if exponent is not None else 2 * len(axes_of(g))
                return tuple(_inverse_root(l, e, matrix_eps, eps) if l.ndim == 2 else l
                             for l in ls)
            return jax.tree.map(lambda g, ls, f: _per_layer(leaf_roots, f, loop=True)(g, ls),
                                grads, stats, flags)

        since_start = count - start_preconditioning_step
        recompute = (since_start >= 0) & (since_start % precondition_frequency == 0)
        roots = jax.lax.cond(recompute, new_roots, lambda: state.roots)
        if graft == "adam":
            nu = jax.tree.map(lambda v, g: b2 * v + stat_weight * g * g, state.nu, grads)
            nu_scale = 1.0 if b2 == 1 else 1.0 - b2 ** t
            grafts = jax.tree.map(lambda v, g: g / (jnp.sqrt(v / nu_scale) + graft_eps),
                                  nu, grads)
        else:
            nu, grafts = None, grads
        directions = jax.tree.map(
            lambda g, d, rs, f: _per_layer(
                lambda g, d, rs: _grafted(g, d, rs, axes_of(g), since_start >= 0), f)(g, d, rs),
            grads, grafts, roots, flags)
        mu = jax.tree.map(lambda m, d: b1 * m + (1.0 - b1) * d, state.mu, directions)
        out = jax.tree.map(lambda m, u: (m / (1.0 - b1 ** t)).astype(u.dtype), mu, updates)
        return out, ScaleByShampooState(count=count, mu=mu, nu=nu, stats=stats, roots=roots)

    return optax.GradientTransformation(
        lambda params: _init_state(params, graft, max_precond_dim,
                                   stack_flags(stacked, params)), update_fn)


@SHAMPOO.defaults_of(exclude=("exponent", "rest_lr_multiplier"))
def shampoo(learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps, weight_decay,
            precondition_frequency, start_preconditioning_step, max_precond_dim, graft,
            graft_eps, matrix_eps, statistics_frequency, exponent: float | None = None,
            mask=None, stacked=None) -> optax.GradientTransformation:
    """Shampoo with layerwise grafting, momentum and decoupled weight decay (module docstring).

    Args:
      learning_rate: a float or an optax schedule of the 0-based step count.
      b1: momentum on the grafted direction, in [0, 1).
      b2: EMA decay of the Shampoo statistics and of the Adam graft's second moment, in
        [0, 1]; 1 sums them as in the original paper (AdaGrad grafting).
      eps: absolute damping added to every statistic before its inverse root.
      exponent: the root e in L^(-1/e); default 2 * (number of preconditioned axes).
      weight_decay: decoupled weight decay, p <- p - lr * weight_decay * p.
      precondition_frequency: steps between recomputations of the inverse roots.
      start_preconditioning_step: first (1-based) step using the Shampoo direction.
      max_precond_dim: axes larger than this are not preconditioned.
      graft: "adam" or "sgd", the direction whose per-parameter norm the update takes.
      graft_eps: the Adam graft's epsilon, outside the square root.
      matrix_eps: damping relative to the largest eigenvalue of each statistic.
      statistics_frequency: steps between updates of the statistics L_i (at steps 1, 1 + f,
        ...; Distributed Shampoo's statistics_compute_steps); the graft's moment is updated
        every step.
      mask: optional pytree of bools (or callable params -> pytree) selecting the params
        weight decay applies to; None decays all.
      stacked: optional pytree of bools (or callable params -> pytree) marking stacks of
        layers along axis 0; each layer is preconditioned and grafted on its own.
    """
    checks.learning_rate(learning_rate)
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2, closed=True)
    for name, value in dict(eps=eps, weight_decay=weight_decay, graft_eps=graft_eps,
                            matrix_eps=matrix_eps).items():
        checks.nonnegative(name, value)
    if exponent is not None:
        checks.positive("exponent", exponent)
    for name, value in dict(precondition_frequency=precondition_frequency,
                            start_preconditioning_step=start_preconditioning_step,
                            max_precond_dim=max_precond_dim,
                            statistics_frequency=statistics_frequency).items():
        checks.integer(name, value)
    checks.one_of("graft", graft, GRAFTS)
    return optax.chain(
        scale_by_shampoo(b1=b1, b2=b2, eps=eps, exponent=exponent,
                         precondition_frequency=int(precondition_frequency),
                         start_preconditioning_step=int(start_preconditioning_step),
                         max_precond_dim=int(max_precond_dim), graft=graft,
                         graft_eps=graft_eps, matrix_eps=matrix_eps,
                         statistics_frequency=int(statistics_frequency), stacked=stacked),
        *decay_then_lr(learning_rate, weight_decay, mask))


@register("shampoo")
def _shampoo_from_config(h, schedule, decay_mask):
    """config.optimizer.shampoo (exponent 0: 2 x the number of preconditioned axes, the
    function's None): Shampoo on the hidden matrices; AdamW with b1, b2, graft_eps and weight
    decay, at lr x rest_lr_multiplier, on embeddings, norms and biases. The AdamW part shares
    b2, so b2 < 1 here; `shampoo()` itself also takes b2 = 1 (summed statistics)."""
    matrices = shampoo(schedule, exponent=h.exponent or None, mask=decay_mask,
                       stacked=stacked_mask,
                       **SHAMPOO.values(h, exclude=("exponent", "rest_lr_multiplier")))
    rest = optax.adamw(scaled_learning_rate(schedule, h.rest_lr_multiplier), b1=h.b1,
                       b2=h.b2, eps=h.graft_eps, weight_decay=h.weight_decay,
                       mask=decay_mask)
    return matrices_and_rest(matrices, rest)
