r"""PSGD Kron: momentum preconditioned by Kronecker-factored preconditioners fitted on the fly.

Xi-Lin Li, "Preconditioned stochastic gradient descent" (2015, arXiv:1512.04202; IEEE TNNLS
2018) and "Preconditioner on matrix Lie group for SGD" (2018, arXiv:1809.10232); the Kron
variant of Evan Walters (with Omead Pooladzandi and Li), one of the optimizers Wen et al. 2025
("Fantastic Pretraining Optimizers and Where to Find Them", arXiv:2509.02046) compare through
levanter's port of psgd_jax. This module follows the PyTorch reference step for step:
github.com/evanatyourservice/kron_torch, kron_torch/kron.py, class Kron.

For a parameter W of (merged) shape d_1 x ... x d_k with gradient G at step t (1-based):

    m   <- b1 m + (1 - b1) G,    M = m / (1 - b1^t)                      (bias-corrected momentum)
    P    = Q^T Q,   Q = Q_1 (x) ... (x) Q_k                  (Kronecker-factored preconditioner)

Each Q_i is upper triangular (d_i x d_i) or diagonal (a d_i vector). PSGD fits P to the
whitening preconditioner P = E[h h^T]^(-1/2) by minimising E[h^T P h + v^T P^-1 v] (Li 2015,
eq. 11-13 with the gradient pair (v, h); here h = M, the "whitening" fit) with a random probe
v ~ N(0, I). On a step that updates the preconditioner (below):

    V ~ N(0, I) of M's shape,   M <- M + sqrt(eps_f32) mean|M| V              (eps = 2^-23)
    A    = M x_1 Q_1 ... x_k Q_k                                    (A = Q M, Q along each dim)
    B    = V x_1 Q_1^-T ... x_k Q_k^-T                         (conj B = Q^-T V, triangular solves)
    for each dim i, with A_(i), B_(i) unfolded along i (contracting all other dims):
      E_i = A_(i) A_(i)^T - B_(i) B_(i)^T,   S_i = A_(i) A_(i)^T + B_(i) B_(i)^T
      triangular:  Q_i <- Q_i - precond_lr triu(E_i) / max(lb(S_i), tiny) Q_i
      diagonal:    Q_i <- Q_i - precond_lr E_i Q_i / max(max|S_i|, tiny)

(Li 2018, eq. 29-31: a step on the Lie group of triangular matrices, normalised by a bound on
the gradient's spectral norm; lb(S) is the reference's cheap lower bound of ||S||_2, one power
iteration from S's largest column.) Then

    U    = P M = M x_1 Q_1^T Q_1 ... x_k Q_k^T Q_k
    U   <- U min(1, 1.1 / (rms(U) + 1e-12))                              (update RMS clipped)
    W   <- W - lr (U + wd W)                                             (wd on >= 2-D tensors)

What the reference does, reproduced here:
- The preconditioner is updated on a deterministic schedule of the update probability
  p(n) = clip(max_prob exp(-decay (n - flat_start)), min_prob, max_prob) at the 0-based step n
  (float32): a counter c <- c + 1 updates when c >= 1 / p(n) and then resets to 0 (so 1 for
  the first flat_start steps, then every ~1/p steps). No random draw decides it.
- About every 100th update (`random.Random(42).random() < 0.01` on every step, and only on an
  update step) the factors of each >= 2-D tensor are balanced before the update: each Q_i is
  rescaled to the geometric mean of the factors' max-abs entries (P unchanged).
- The noise is added to M *in place* (torch `G +=` on the debiased momentum passed to the
  update), so on an update step the update U is computed from the perturbed M. With
  momentum_into_precond_update=False the fit sees the (perturbed) gradient instead and U the
  clean M.
- Tensors with more than 2 dims are viewed as the matrix (prod(shape[:-1]), shape[-1])
  (merge_dims; the reference picks between that and (shape[0], prod(shape[1:])) by the signed
  np.diff of each, which always picks the first, balanced or not).
- A dim gets a diagonal factor if its size is 1 or > max_size_triangular, if the tensor has
  < min_ndim_triangular dims (1-D parameters: all diagonal), or by memory_save_mode
  ("one_diag": the dim np.argsort(shape)[::-1][0]; "smart_one_diag": that dim if strictly the
  largest; "all_diag"). Q_i starts at precond_init_scale^(1/k) I.
- The momentum is kept in mu_dtype (default: the parameter's), everything after the bias
  correction in precond_dtype (default float32). Weight decay applies only to >= 2-D tensors
  (optiscale: the `mask`, whose default rule is the same per layer).

Differences, by design: the reference runs its triangular solves in float32 whatever
precond_dtype is (a float64 preconditioner loses precision there); they run here in
precond_dtype, at least float32. The fixture's float64 runs patch the reference the same way
(tests/fixtures/optimizers/make_kron.py). A scalar parameter is treated as a (1,) vector (the
reference's scalar path fails in its solve).

Randomness (issue 29, item 4): the probes V and the balancing draws come from a PRNG key in
the state (`seed`), split every step. The probe of a tensor is drawn from the step key folded
with a hash of its name, and a stacked layer's (model.scan_layers, `stacked`) from the name the
unrolled model gives that layer ("layers/..." at layer i -> "block_i/..."), so every layer has
its own noise and a scanned model draws exactly the noise of the unrolled one. `hooks`
(KronHooks) replace the draws and decisions with given ones: how the tests replay the
reference's recorded noise exactly.

State per parameter: the momentum (like the parameter) and one factor per (merged) dim, d_i^2
floats if triangular, d_i if diagonal (stacked layers: times the layer count); plus a step
count, the update counter and the key.
"""
import math
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.kron import KRON, MEMORY_SAVE_MODES, PRECISIONS
from optim.masks import STACK, path_name, stack_flags, stacked_mask
from optim.numerics import one_minus_power
from optim.registry import register

_PRECISION = dict(zip(PRECISIONS, (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGH,
                                   jax.lax.Precision.DEFAULT)))
_EPS = float(np.finfo(np.float32).eps)  # the reference's noise scale is sqrt of this, any dtype
_BALANCE_PROB = 0.01  # the reference's `self.rng.random() < 0.01`
_CLIP_RMS = 1.1  # the reference's _clip_update_rms


class KronState(NamedTuple):
    """count: update calls so far (int32; the reference's _prob_step, and each parameter's
    state["step"] - 1); counter: the reference's _update_counter (int32); key: the PRNG key of
    the probes and balancing draws; mu: the momentum, like the params; q: per parameter a tuple
    with one factor per dim of its (merged) shape: (d, d) upper triangular or (d,) diagonal,
    with a leading layer axis for a stacked parameter."""
    count: jax.Array
    counter: jax.Array
    key: jax.Array
    mu: Any
    q: Any

    @staticmethod
    def factor_param_axis(field: str, index: tuple) -> int | None:
        """Sharding declaration (lm/train/sharding.py): entry i of a parameter's `q` tuple is the
        factor of axis i (of the merged shape, the parameter's own unless merged)."""
        return index[0] if field == "q" else None


class KronHooks(NamedTuple):
    """Injected randomness and decisions (tests; None: Kron's own). `noise(count, updates)`: the
    probes V, a pytree like the updates (parameter shapes) used on an update step at the
    0-based call `count`; `update(count)`: whether the call updates the preconditioners;
    `balance(count)`: whether it balances them (only ever on an update step)."""
    noise: Callable | None = None
    update: Callable | None = None
    balance: Callable | None = None


class _Settings(NamedTuple):
    b1: float
    precond_lr: float
    momentum_into_precond_update: bool
    precond_dtype: Any
    precision: Any


class _Layout(NamedTuple):
    """One layer's tensor as the preconditioner sees it: its (merged) shape and which dims have
    a triangular factor (the others a diagonal one)."""
    shape: tuple
    triangular: tuple


def _merged_shape(shape: tuple, merge_dims: bool) -> tuple:
    """The reference's merge of a > 2-D tensor into a matrix (module docstring); a scalar is
    (1,)."""
    if len(shape) == 0:
        return (1,)
    if len(shape) > 2 and merge_dims:
        # The reference: shape1 if np.diff(shape1) <= np.diff(shape2) else shape2, for shape1 =
        # (a M, c), shape2 = (a, M c): c - a M <= M c - a for every M >= 1, so always shape1.
        return (math.prod(shape[:-1]), shape[-1])
    return tuple(shape)


def layout(shape, *, max_size_triangular, min_ndim_triangular, memory_save_mode,
           merge_dims) -> _Layout:
    """The preconditioner layout of one layer's tensor of `shape` (the reference's
    _init_Q_exprs)."""
    shape = _merged_shape(tuple(shape), merge_dims)
    diagonal = [False] * len(shape)
    largest = int(np.argsort(shape)[::-1][0])
    if memory_save_mode == "smart_one_diag":
        ordered = sorted(shape)
        if len(shape) > 1 and ordered[-1] > ordered[-2]:
            diagonal[largest] = True
    elif memory_save_mode == "one_diag":
        diagonal[largest] = True
    elif memory_save_mode == "all_diag":
        diagonal = [True] * len(shape)
    triangular = tuple(not (size == 1 or size > max_size_triangular
                            or len(shape) < min_ndim_triangular or diag)
                       for size, diag in zip(shape, diagonal))
    return _Layout(shape, triangular)


def factor_floats(shape, **structure) -> int:
    """Floats of one layer's factors (d^2 per triangular dim, d per diagonal one), for the
    memory model; `structure` as `layout` takes it."""
    lay = layout(shape, **structure)
    return sum(d * d if tri else d for d, tri in zip(lay.shape, lay.triangular))


def update_probability(n, *, max_prob, min_prob, decay, flat_start):
    """The reference's precond_update_prob_schedule at the 0-based step n, in float32."""
    f32 = jnp.float32
    n = jnp.asarray(n, f32)
    prob = f32(max_prob) * jnp.exp(-f32(decay) * (n - f32(flat_start)))
    return jnp.clip(prob, f32(min_prob), f32(max_prob))


# --------------------------------------------------------------------------- one tensor


def _along(x, axis, fn):
    """fn applied to x with `axis` moved last (and back)."""
    return jnp.moveaxis(fn(jnp.moveaxis(x, axis, -1)), -1, axis)


def _left(q, x, axis, transpose, precision):
    """x with the factor applied along `axis`: Q x (transpose: Q^T x) for a triangular q, q * x
    for a diagonal one."""
    if q.ndim == 1:
        return _along(x, axis, lambda y: y * q)
    # Q x along the axis: y_a = sum_b Q[a, b] x_b; Q^T x: y_b = sum_a Q[a, b] x_a.
    sub = "ab,...b->...a" if not transpose else "ab,...a->...b"
    return _along(x, axis, lambda y: jnp.einsum(sub, q, y, precision=precision))


def _solve_right(q, x, axis):
    """x with dim `axis` right-multiplied by Q^-1 (conj B = Q^-T V along it): a triangular solve
    in precond dtype, at least float32 (the reference: float32), or a division by q."""
    if q.ndim == 1:
        return _along(x, axis, lambda y: y / q)
    dtype = jnp.promote_types(q.dtype, jnp.float32)

    def solve(y):
        flat = y.reshape(-1, y.shape[-1]).astype(dtype)
        out = jax.lax.linalg.triangular_solve(q.astype(dtype), flat, left_side=False,
                                              lower=False)
        return out.astype(q.dtype).reshape(y.shape)
    return _along(x, axis, solve)


def _contract_others(a, axis, triangular, precision):
    """A_(i) A_(i)^T (triangular) or its diagonal (diagonal): `a` with itself, over every dim
    but `axis`."""
    others = [d for d in range(a.ndim) if d != axis]
    if not triangular:
        return jnp.sum(a * a, axis=tuple(others))
    return jnp.tensordot(a, a, axes=(others, others), precision=precision)


def _norm_lower_bound(s, max_abs, precision):
    """The reference's _lb: a cheap lower bound of ||S||_2 (S symmetric, max|S| = max_abs > 0):
    one power-iteration step from S's largest column."""
    a = s / max_abs
    column = a[:, jnp.argmax(jnp.sum(a * a, axis=0))]
    x = jnp.matmul(column, a, precision=precision)
    x = x / jnp.linalg.norm(x)
    x = jnp.matmul(a, x, precision=precision)
    return jnp.linalg.norm(x) * max_abs


def _balance(factors):
    """The reference's _balance_Q: every factor rescaled to the geometric mean of their
    max-abs entries (the product, hence P, unchanged)."""
    norms = jnp.stack([jnp.max(jnp.abs(q)) for q in factors])
    norms = jnp.exp(jnp.mean(jnp.log(norms))) / norms
    return tuple(q * n for q, n in zip(factors, norms))


def _fit(h: _Settings, factors, g, v):
    """One preconditioner update with the pair (g, v) (module docstring): the new factors and
    g with the probe noise added (the reference adds it in place)."""
    dtype = h.precond_dtype
    tiny = jnp.finfo(dtype).tiny
    g = g + jnp.sqrt(jnp.asarray(_EPS, dtype)) * jnp.mean(jnp.abs(g)) * v
    a, conj_b = g, v
    for axis, q in enumerate(factors):
        a = _left(q, a, axis, False, h.precision)
        conj_b = _solve_right(q, conj_b, axis)
    new = []
    for axis, q in enumerate(factors):
        aa = _contract_others(a, axis, q.ndim == 2, h.precision)
        bb = _contract_others(conj_b, axis, q.ndim == 2, h.precision)
        step, total = (aa - bb) * jnp.asarray(h.precond_lr, dtype), aa + bb
        norm = jnp.max(jnp.abs(total))
        if q.ndim == 1:
            step = step * (q / jnp.maximum(norm, tiny))
        else:
            bound = jnp.where(norm > 0, _norm_lower_bound(
                total, jnp.where(norm > 0, norm, 1), h.precision), norm)
            step = jnp.matmul(jnp.triu(step) / jnp.maximum(bound, tiny), q,
                              precision=h.precision)
        new.append(q - step)
    return tuple(new), g


def _precondition(h: _Settings, factors, g):
    """P g = g x_i Q_i^T Q_i along every dim."""
    for axis, q in enumerate(factors):
        g = _left(q, _left(q, g, axis, False, h.precision), axis, True, h.precision)
    return g


def _tensor_direction(h: _Settings, lay: _Layout, decisions, g, mu, factors, noise, draw,
                      step):
    """(direction, new momentum, new factors) of one layer's tensor. `noise` is the probe V
    (parameter-shaped) or, if `draw`, a key to draw it from."""
    do_update, balance = decisions
    dtype = h.precond_dtype
    mu = (h.b1 * mu + (1 - h.b1) * g.astype(mu.dtype)).astype(mu.dtype)
    bias = one_minus_power(h.b1, step)
    debiased = (mu / jnp.asarray(bias, mu.dtype)).astype(dtype).reshape(lay.shape)
    fit_input = debiased if h.momentum_into_precond_update else g.astype(dtype).reshape(
        lay.shape)
    if len(lay.shape) > 1:
        factors = jax.lax.cond(balance, _balance, lambda f: f, factors)

    def update(factors, fit_input):
        v = (jax.random.normal(noise, lay.shape, dtype) if draw
             else noise.astype(dtype).reshape(lay.shape))
        return _fit(h, factors, fit_input, v)

    factors, fitted = jax.lax.cond(do_update, update, lambda f, x: (f, x), factors, fit_input)
    if h.momentum_into_precond_update:
        debiased = fitted  # the reference's in-place noise reaches the update
    u = _precondition(h, factors, debiased)
    u = u * jnp.minimum(1.0, _CLIP_RMS / (jnp.sqrt(jnp.mean(jnp.square(u))) + 1e-12)).astype(
        dtype)
    return u.reshape(g.shape).astype(g.dtype), mu, factors


# --------------------------------------------------------------------------- the transform


def _name_id(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _noise_ids(path, stacked: bool, layers: int) -> list[int]:
    """Ids of a tensor's probes: its name, or per layer of a stack the unrolled model's name of
    that layer (the STACK key replaced by block_i)."""
    if not stacked:
        return [_name_id(path_name(path))]
    ids = []
    for i in range(layers):
        renamed = tuple(jax.tree_util.DictKey(f"block_{i}")
                        if getattr(k, "key", None) == STACK else k for k in path)
        name = path_name(renamed)
        ids.append(_name_id(name if renamed != tuple(path) else f"{name}[{i}]"))
    return ids


def _dtype(name):
    return None if name in (None, "") else jnp.dtype(name)


@KRON.defaults_of(exclude=("weight_decay",))
def scale_by_kron(*, b1, precond_lr, precond_init_scale, update_prob_max, update_prob_min,
                  update_prob_decay, update_prob_flat_start, max_size_triangular,
                  min_ndim_triangular, memory_save_mode, momentum_into_precond_update,
                  merge_dims, mu_dtype, precond_dtype, precision, seed, stacked=None,
                  hooks: KronHooks | None = None) -> optax.GradientTransformation:
    """Kron's direction U (the module docstring, without learning rate and weight decay).

    Args:
      b1: momentum decay; the momentum is bias-corrected.
      precond_lr: step size of the preconditioner fit.
      precond_init_scale: Q starts at precond_init_scale^(1/ndim) I per dim.
      update_prob_max, update_prob_min, update_prob_decay, update_prob_flat_start: the
        schedule of the preconditioner update probability (`update_probability`); a constant
        probability p is update_prob_max = update_prob_min = p.
      max_size_triangular, min_ndim_triangular, memory_save_mode: which dims get a triangular
        factor (`layout`); memory_save_mode "" or None is the reference's None.
      momentum_into_precond_update: fit to the debiased momentum (else to the gradient).
      merge_dims: view > 2-D tensors as matrices.
      mu_dtype: the momentum's dtype ("" or None: the parameter's).
      precond_dtype: dtype of the factors and the preconditioning (float32, bfloat16, float64).
      precision: matmul precision ("highest", "high", "default").
      seed: seed of the PRNG key in the state (probes and balancing draws).
      stacked: a pytree of bools like the params, or a callable of them (None: none), marking
        stacks of layers along axis 0: each layer gets its own factors and probes.
      hooks: KronHooks replacing the probes and decisions (tests).
    """
    checks.in_unit_interval("b1", b1)
    checks.positive("precond_lr", precond_lr)
    checks.positive("precond_init_scale", precond_init_scale)
    for name, prob in (("update_prob_max", update_prob_max),
                       ("update_prob_min", update_prob_min)):
        checks.positive(name, prob)
        if prob > 1:
            raise ValueError(f"{name}={prob!r} must be a probability in (0, 1]")
    if update_prob_min > update_prob_max:
        raise ValueError(f"update_prob_min={update_prob_min!r} must be <= update_prob_max="
                         f"{update_prob_max!r}")
    checks.nonnegative("update_prob_decay", update_prob_decay)
    checks.integer("update_prob_flat_start", update_prob_flat_start, minimum=0)
    checks.integer("max_size_triangular", max_size_triangular)
    checks.integer("min_ndim_triangular", min_ndim_triangular)
    memory_save_mode = memory_save_mode or ""
    checks.one_of("memory_save_mode", memory_save_mode, MEMORY_SAVE_MODES)
    checks.one_of("precision", precision, PRECISIONS)
    checks.integer("seed", seed, minimum=0)
    structure = dict(max_size_triangular=max_size_triangular,
                     min_ndim_triangular=min_ndim_triangular, memory_save_mode=memory_save_mode,
                     merge_dims=merge_dims)
    mu_dtype, precond_dtype = _dtype(mu_dtype), _dtype(precond_dtype) or jnp.dtype("float32")
    if not jnp.issubdtype(precond_dtype, jnp.floating):
        raise ValueError(f"precond_dtype={precond_dtype!r} must be a float dtype")
    h = _Settings(b1, precond_lr, momentum_into_precond_update, precond_dtype,
                  _PRECISION[precision])
    hooks = hooks or KronHooks()
    schedule = dict(max_prob=update_prob_max, min_prob=update_prob_min,
                    decay=update_prob_decay, flat_start=update_prob_flat_start)

    def split(p, is_stacked):
        """(layers or None, one layer's layout)."""
        shape = tuple(p.shape)
        if is_stacked:
            return shape[0], layout(shape[1:], **structure)
        return None, layout(shape, **structure)

    def init_fn(params):
        def factors(p, is_stacked):
            layers, lay = split(p, is_stacked)
            scale = precond_init_scale ** (1 / len(lay.shape))
            lead = () if layers is None else (layers,)
            return tuple(jnp.broadcast_to(
                scale * (jnp.eye(d, dtype=precond_dtype) if tri
                         else jnp.ones(d, precond_dtype)), lead + ((d, d) if tri else (d,)))
                for d, tri in zip(lay.shape, lay.triangular))

        return KronState(
            count=jnp.zeros([], jnp.int32), counter=jnp.zeros([], jnp.int32),
            key=jax.random.PRNGKey(seed),
            mu=jax.tree.map(lambda p: jnp.zeros(p.shape, mu_dtype or p.dtype), params),
            q=jax.tree.map(factors, params, stack_flags(stacked, params)))

    def update_fn(updates, state, params=None):
        del params
        count = state.count
        key, step_key = jax.random.split(state.key)
        counter = state.counter + 1
        prob = update_probability(count, **schedule)
        do_update = counter.astype(jnp.float32) >= 1 / prob
        if hooks.update is not None:
            do_update = jnp.asarray(hooks.update(count), bool)
        counter = jnp.where(do_update, 0, counter)
        if hooks.balance is not None:
            balance = jnp.asarray(hooks.balance(count), bool)
        else:
            balance = jax.random.uniform(jax.random.fold_in(step_key, 0)) < _BALANCE_PROB
        decisions = (do_update, balance & do_update)
        step = optax.safe_int32_increment(count)

        leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
        columns = zip(leaves, *(treedef.flatten_up_to(tree) for tree in (
            state.mu, state.q, stack_flags(stacked, updates))))
        noise = (None if hooks.noise is None
                 else treedef.flatten_up_to(hooks.noise(count, updates)))
        out, mu, q = [], [], []
        for i, ((path, g), m, factors, is_stacked) in enumerate(columns):
            layers, lay = split(g, is_stacked)
            if noise is None:
                keys = [jax.random.fold_in(step_key, k)
                        for k in _noise_ids(path, is_stacked, layers or 1)]
                probe, draw = jnp.stack(keys) if is_stacked else keys[0], True
            else:
                probe, draw = noise[i], False

            def one(g, m, factors, probe, lay=lay, draw=draw):
                return _tensor_direction(h, lay, decisions, g, m, factors, probe, draw, step)
            u, m, factors = (jax.vmap(one) if is_stacked else one)(g, m, factors, probe)
            out.append(u)
            mu.append(m)
            q.append(factors)
        new_mu, new_q = treedef.unflatten(mu), treedef.unflatten(q)
        return treedef.unflatten(out), KronState(step, counter, key, new_mu, new_q)

    return optax.GradientTransformation(init_fn, update_fn)


@KRON.defaults_of()
def kron(learning_rate: optax.ScalarOrSchedule, *, weight_decay, mask=None, stacked=None,
         hooks: KronHooks | None = None, **direction) -> optax.GradientTransformation:
    """PSGD Kron with the reference's defaults (optim/hparams/kron.py): `scale_by_kron` with the
    `direction` hyperparameters, decoupled weight decay W <- W - lr wd W of the parameters
    `mask` selects (None: all; the reference decays the >= 2-D ones) and the learning rate (a
    float or a schedule of the 0-based call count). `stacked` and `hooks` as in scale_by_kron;
    `update` needs `params` when weight_decay > 0. Apply with optax.apply_updates."""
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(
        scale_by_kron(stacked=stacked, hooks=hooks, **direction),
        *decay_then_lr(learning_rate, weight_decay, mask))


@register("kron", supports_mup=False)
def _kron_from_config(h, schedule, decay_mask):
    """config.optimizer.kron on every parameter (as the reference: 1-D ones get diagonal
    factors, a vocabulary longer than max_size_triangular a diagonal one), decaying the
    parameters `decay_mask` selects; each scanned layer its own factors and probes.
    supports_mup=False: the whitened step is Shampoo-like, not Adam's per-entry scale, so
    muP's Adam rule (hidden lr / m) does not apply."""
    return kron(schedule, mask=decay_mask, stacked=stacked_mask, **KRON.values(h))
