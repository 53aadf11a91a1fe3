"""SOAP: Shampoo with Adam in the Preconditioner's eigenbasis.

Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321,
following the authors' reference PyTorch code (github.com/nikhilvyas/SOAP, soap.py) step for step.

Algorithm 1 of the paper, for a weight W with gradient G (one factor per tensor dimension in
general):
    L <- b_s L + (1 - b_s) G G^T,   R <- b_s R + (1 - b_s) G^T G      (Shampoo's factors, "GG")
    Q_L, Q_R: eigenbases of L and R                                    ("Q")
    G' = Q_L^T G Q_R                                                   (rotate into the eigenbasis)
    M <- b1 M + (1 - b1) G            (first moment, kept in the original space)
    V <- b2 V + (1 - b2) G' * G'      (Adam's second moment, in the eigenbasis)
    N  = Q_L [ (Q_L^T M Q_R) / (sqrt(V) + eps) ] Q_R^T                 (Adam step, rotated back)
    W <- W - lr * sqrt(1 - b2^t) / (1 - b1^t) * N,   then   W <- W - lr * wd * W
The eigenbases start from an eigendecomposition of the first gradient's statistics and are refreshed
every `precondition_frequency` steps by one power-iteration step followed by a QR decomposition
(Algorithm 4), with V's entries permuted to follow the re-sorted eigenvectors.

As in the reference: the first call only initialises L, R, Q_L, Q_R and returns a zero update (so
the current gradient is never used in its own projection); at call c >= 1 (0-based) Adam's step
count is t = c; the statistics are updated with the gradient after the parameter step, and the
eigenbasis is refreshed at calls c > 0 with c % precondition_frequency == 0. A dimension larger than
`max_precond_dim` (and a 1-D parameter unless `precondition_1d`) is not rotated, so a tensor with no
rotated dimension gets exactly Adam (with the reference's eps placement and post-step decay).

Extension for large runs (levanter's SOAP has it; off by default, so the default is the reference):
`block_size` partitions every dimension longer than block_size into blocks of block_size (the last
one shorter when the size is not a multiple), and each block gets its own factors and eigenbases,
i.e. a block-diagonal preconditioner. A (m, n) matrix then costs O(mn * block_size) per rotation
instead of O(mn (m + n)) and stores (m + n) * block_size factor entries instead of m^2 + n^2.
Blocks of equal shape are rotated together (vmap) and their eigenbases updated in a loop (lax.map),
so the compiled step does not grow with the number of blocks.

Written as optax writes its optimizers: `scale_by_soap` is the direction (Adam in the eigenbasis,
bias correction included), chained with the learning rate and decoupled weight decay on the
stepped parameters (optim/decay.py, the reference's order), which takes a `mask`.
"""
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import blocks, checks
from optim.decay import add_decayed_weights_after_step
from optim.hparams.soap import BLOCK_UPDATES, PRECISIONS, SOAP
from optim.masks import matrices_and_rest, stack_flags, stacked_mask
from optim.registry import register
from optim.schedules import scaled_learning_rate

# The precision of the rotations and statistics (hparams PRECISIONS, in that order): the
# reference runs true float32 matmuls (PyTorch's TF32 default is off), "highest" here, which
# costs six bf16 passes on a TPU MXU; "high" is three (bf16_3x, ~float32 accuracy), "default"
# one (bf16 on TPU, TF32 on GPU). `block_update` (BLOCK_UPDATES) says how the eigenbases of a
# region's equal blocks are updated: one after another (lax.map) or together (vmap, batched
# eigh / QR); "auto" maps on CPU, where batched LAPACK calls inside lax.switch hung XLA's
# runtime (jax 0.10), and vmaps on GPU and TPU.
_PRECISION = dict(zip(PRECISIONS, (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGH,
                                   jax.lax.Precision.DEFAULT)))


class SoapState(NamedTuple):
    """SOAP's state. `gg` and `q` hold, per parameter, a tuple with one entry per region of equal
    blocks (one region, of one block, without block_size; see _regions), each a tuple with one
    entry per dimension of the (possibly merged) shape: a (blocks, d, d) float32 stack of
    matrices, or a (blocks, 0) placeholder for an unrotated dim."""
    count: jax.Array  # number of update calls so far (int32), the first (statistics-only) included
    exp_avg: Any  # first moment M, original space
    exp_avg_sq: Any  # second moment V, in the eigenbasis (parameter shape)
    gg: Any  # Shampoo factors L, R, ... (exponential moving averages of G G^T per dim)
    q: Any  # their eigenbases Q_L, Q_R, ...

    @staticmethod
    def factor_param_axis(field: str, index: tuple) -> int | None:
        """Sharding declaration (lm/train/sharding.py): the gg / q leaf at (region, dim) of a
        parameter is a stack of factors of its axis `dim` (of the merged shape, which is the
        parameter's own unless merge_dims merged small dims)."""
        return index[1] if field in ("gg", "q") else None


def _merged_shape(shape, max_precond_dim):
    """The reference's `merge_dims`: merge consecutive dims while their product stays
    <= max_precond_dim, e.g. (2, 2, 3) -> (4, 3) for max_precond_dim=10."""
    merged, current = [], 1
    for size in shape:
        if current * size > max_precond_dim:
            if current > 1:
                merged.append(current)
                current = size
            else:
                merged.append(size)
                current = 1
        else:
            current *= size
    if current > 1 or not merged:
        merged.append(current)
    return tuple(merged)


def _preconditioned_shape(shape, max_precond_dim, merge_dims):
    """The shape the preconditioner acts on: `shape`, with small dims merged if merge_dims
    (never for 1-D parameters, as in the reference's `init_preconditioner`)."""
    if merge_dims and len(shape) > 1:
        return _merged_shape(shape, max_precond_dim)
    return tuple(shape)


def _rotate(x, bases, back, precision):
    """Apply Q^T (back=False: into the eigenbasis) or Q (back=True: back to the original space)
    along every dim of x; a (0,) placeholder leaves its dim as is (the reference's project and
    project_back: contract the leading dim, which then moves to the end)."""
    for q in bases:
        if q.ndim == 2:
            x = jnp.tensordot(x, q, axes=([0], [1 if back else 0]), precision=precision)
        else:
            x = jnp.moveaxis(x, 0, -1)
    return x


def _factor(g, axis, precision):
    """G_(axis) G_(axis)^T: the gradient's outer product contracted over all dims but `axis`."""
    others = [d for d in range(g.ndim) if d != axis]
    return jnp.tensordot(g, g, axes=(others, others), precision=precision)


def _eigenbasis(m):
    """Eigenvectors of the symmetric m, largest eigenvalue first (torch.linalg.eigh of
    m + 1e-30 I on the lower triangle, columns flipped, as the reference)."""
    eye = jnp.eye(m.shape[0], dtype=m.dtype)
    return jnp.linalg.eigh(m + 1e-30 * eye, UPLO="L", symmetrize_input=False)[1][:, ::-1]


def _refresh(stats, bases, v, precision):
    """Algorithm 4 (the reference's get_orthogonal_matrix_QR): sort the current basis by the
    eigenvalue estimates diag(Q^T L Q), permute V's entries along that dim the same way, then
    one power-iteration step L Q and a QR decomposition give the new basis."""
    new_bases = []
    for axis, (m, q) in enumerate(zip(stats, bases)):
        if m.ndim != 2:
            new_bases.append(q)
            continue
        estimates = jnp.sum(q * jnp.matmul(m, q, precision=precision), axis=0)
        order = jnp.argsort(estimates, descending=True)
        v = jnp.take(v, order, axis=axis)
        new_bases.append(jnp.linalg.qr(jnp.matmul(m, q[:, order], precision=precision))[0])
    return tuple(new_bases), v


class _Settings(NamedTuple):
    """scale_by_soap's hyperparameters, as the per-tensor functions below use them."""
    b1: float
    b2: float
    factor_beta: float  # the factors' moving-average rate (shampoo_beta, or b2)
    eps: float
    max_precond_dim: int
    merge_dims: bool
    precondition_1d: bool
    block_size: int
    precision: jax.lax.Precision
    block_update: str  # "map" or "vmap" (resolved)

    def layout(self, shape):
        """(preconditioned shape, its regions of equal blocks)."""
        merged = _preconditioned_shape(shape, self.max_precond_dim, self.merge_dims)
        return merged, blocks.regions(merged, self.block_size)

    def rotated(self, block) -> tuple:
        """Which dims of a block are rotated: none longer than max_precond_dim, and a 1-D
        parameter's only if precondition_1d."""
        return tuple(size <= self.max_precond_dim and (len(block) > 1 or self.precondition_1d)
                     for size in block)


def _init_factors(h: _Settings, p, make, stacked: bool):
    """Per region, per dim: a (blocks, d, d) stack of `make(d)`, or (blocks, 0) if unrotated;
    a stacked parameter's layers are blocks too (one set of factors per layer)."""
    dtype = jnp.promote_types(p.dtype, jnp.float32)
    layers, shape = (p.shape[0], p.shape[1:]) if stacked else (1, p.shape)
    return tuple(
        tuple(jnp.broadcast_to(make(size, dtype), (layers * math.prod(r.counts), size, size))
              if on else jnp.zeros((layers * math.prod(r.counts), 0), dtype)
              for size, on in zip(r.block, h.rotated(r.block)))
        for r in h.layout(shape)[1])


def _to_blocks(x, region, stacked: bool):
    """`blocks.to_blocks`, per layer of a stacked x, the layers' blocks one after another."""
    if not stacked:
        return blocks.to_blocks(x, region)
    per_layer = jax.vmap(lambda layer: blocks.to_blocks(layer, region))(x)
    return per_layer.reshape((-1,) + region.block)


def _assemble(pieces, regions, shape, dtype, layers: int):
    """`blocks.assemble`, per layer when `layers` (a stacked parameter's layer count)."""
    if not layers:
        return blocks.assemble(pieces, regions, shape, dtype)
    per_layer = [piece.reshape((layers, -1) + piece.shape[1:]) for piece in pieces]
    return jax.vmap(lambda *ps: blocks.assemble(list(ps), regions, shape, dtype))(*per_layer)


def _adam_in_eigenbasis(h: _Settings, g, m_new, v, stats, bases):
    """One block: Adam in the eigenbasis of the current (previous calls') Q, and the Shampoo
    factors updated with the current gradient (after the step, as the reference)."""
    g_rot = _rotate(g, bases, False, h.precision)
    v_new = h.b2 * v + (1 - h.b2) * jnp.square(g_rot)
    direction = _rotate(m_new, bases, False, h.precision) / (jnp.sqrt(v_new) + h.eps)
    direction = _rotate(direction, bases, True, h.precision)
    stats = tuple(s + (1 - h.factor_beta) * (_factor(g, axis, h.precision) - s)
                  if s.ndim == 2 else s
                  for axis, s in enumerate(stats))
    return direction, v_new, stats


def _new_bases(h: "_Settings", branch, v, v_new, stats, bases):
    """A region's bases (and V, permuted with them) after this call, block by block. `branch`
    0: the initial eigendecomposition, 1: power iteration + QR, 2: keep. h.block_update says
    whether the blocks go one after another (lax.map) or together (vmap)."""
    def eigh_all(args):
        stats, bases, v = args
        return tuple(_eigenbasis(s) if s.ndim == 2 else q for s, q in zip(stats, bases)), v

    def refresh_all(args):
        return _refresh(*args, h.precision)

    def each(fn, args):
        return jax.vmap(fn)(args) if h.block_update == "vmap" else jax.lax.map(fn, args)

    return jax.lax.switch(branch, [lambda: each(eigh_all, (stats, bases, v)),
                                   lambda: each(refresh_all, (stats, bases, v_new)),
                                   lambda: (bases, v_new)])


def _tensor_update(h: _Settings, branch, g, m, v, stats, bases, stacked: bool):
    """(direction, new M, new V, factors, bases) of one parameter, region by region."""
    dtype = m.dtype
    g = g.astype(dtype)
    lead = g.shape[:1] if stacked else ()
    shape, regions = h.layout(g.shape[len(lead):])
    m_new = h.b1 * m + (1 - h.b1) * g  # first moment, original space
    inputs = [x.reshape(lead + shape) for x in (g, m_new, v)]
    outputs = []
    for region, s, q in zip(regions, stats, bases):
        g_b, m_b, v_b = (_to_blocks(x, region, stacked) for x in inputs)
        direction, v_new, s = jax.vmap(lambda *a: _adam_in_eigenbasis(h, *a))(g_b, m_b, v_b, s, q)
        q, v_rot = _new_bases(h, branch, v_b, v_new, s, q)
        outputs.append((direction, v_rot, s, q))
    direction, v_rot = (_assemble([o[i] for o in outputs], regions, shape, dtype,
                                  lead[0] if stacked else 0).reshape(g.shape) for i in (0, 1))
    return (direction, m_new, v_rot, tuple(o[2] for o in outputs),
            tuple(o[3] for o in outputs))


@SOAP.defaults_of(exclude=("weight_decay", "rest_lr_multiplier"))
def scale_by_soap(*, b1, b2, shampoo_beta, eps, precondition_frequency, max_precond_dim,
                  merge_dims, precondition_1d, normalize_grads, correct_bias, block_size,
                  precision, block_update, stacked=None) -> optax.GradientTransformation:
    """SOAP's direction (the module docstring, without learning rate and weight decay): N,
    times sqrt(1 - b2^t) / (1 - b1^t) if correct_bias, divided by its RMS if normalize_grads.
    The first call initialises the factors and bases and returns zeros.

    shampoo_beta < 0 uses b2 for the factors' moving average. merge_dims merges small dims of
    >= 2-D tensors before preconditioning; block_size (0: off) gives each block of at most
    block_size along every dim its own preconditioner. `precision` (PRECISIONS) is that of the
    rotations and statistics; `block_update` (BLOCK_UPDATES) how the blocks' eigenbases are
    updated. `stacked` (a pytree of bools like the params, or a callable of them; None: none)
    marks stacks of layers along axis 0, each layer preconditioned on its own (levanter maps
    SOAP over stacked layers)."""
    for name, beta in (("b1", b1), ("b2", b2)):
        checks.in_unit_interval(name, beta)
    if not shampoo_beta < 1:
        raise ValueError(f"shampoo_beta={shampoo_beta!r} must be < 1 (negative means b2)")
    checks.positive("eps", eps)
    checks.integer("precondition_frequency", precondition_frequency)
    checks.integer("max_precond_dim", max_precond_dim)
    checks.integer("block_size", block_size or 0, minimum=0)
    checks.one_of("precision", precision, PRECISIONS)
    checks.one_of("block_update", block_update, BLOCK_UPDATES)
    if block_update == "auto":
        block_update = "map" if jax.default_backend() == "cpu" else "vmap"
    h = _Settings(b1, b2, shampoo_beta if shampoo_beta >= 0 else b2, eps, max_precond_dim,
                  merge_dims, precondition_1d, block_size or 0, _PRECISION[precision],
                  block_update)

    def init_fn(params):
        zeros = lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32))  # noqa
        flags = stack_flags(stacked, params)

        def factors(make):
            return jax.tree.map(lambda p, f: _init_factors(h, p, make, f), params, flags)
        return SoapState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=jax.tree.map(zeros, params), exp_avg_sq=jax.tree.map(zeros, params),
            gg=factors(lambda d, t: jnp.zeros((d, d), t)),
            q=factors(lambda d, t: jnp.eye(d, dtype=t)))

    def update_fn(grads, state, params=None):
        del params
        count, first = state.count, state.count == 0
        t = jnp.maximum(count, 1).astype(jnp.float32)  # Adam's step: the first call is skipped
        scale = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t) if correct_bias else 1.0
        branch = jnp.where(first, 0, jnp.where(count % precondition_frequency == 0, 1, 2))
        treedef = jax.tree.structure(grads)
        columns = zip(*(treedef.flatten_up_to(tree) for tree in (
            grads, state.exp_avg, state.exp_avg_sq, state.gg, state.q,
            stack_flags(stacked, grads))))
        out, exp_avg, exp_avg_sq, gg, q = ([] for _ in range(5))
        for g, m, *rest in columns:
            direction, m_new, v, stats, bases = _tensor_update(h, branch, g, m, *rest)
            if normalize_grads:
                direction = direction / (1e-30 + jnp.sqrt(jnp.mean(jnp.square(direction))))
            out.append(jnp.where(first, 0, scale * direction).astype(g.dtype))
            exp_avg.append(jnp.where(first, m, m_new))
            for column, value in ((exp_avg_sq, v), (gg, stats), (q, bases)):
                column.append(value)
        new = [treedef.unflatten(column) for column in (out, exp_avg, exp_avg_sq, gg, q)]
        return new[0], SoapState(optax.safe_int32_increment(count), *new[1:])

    return optax.GradientTransformation(init_fn, update_fn)


@SOAP.defaults_of(exclude=("rest_lr_multiplier",))
def soap(learning_rate: optax.ScalarOrSchedule, *, weight_decay, mask=None, stacked=None,
         **direction) -> optax.GradientTransformation:
    """SOAP with the reference's defaults (optim/hparams/soap.py): `scale_by_soap` with the
    `direction` hyperparameters, the learning rate (a float or a schedule of the 0-based call
    count) and decoupled weight decay of the stepped parameters that `mask` selects (None: all;
    optax's `mask`); `stacked` as in scale_by_soap. `update` needs `params` when
    weight_decay > 0. Apply the output with optax.apply_updates."""
    checks.learning_rate(learning_rate)
    return optax.chain(
        scale_by_soap(stacked=stacked, **direction),
        optax.scale_by_learning_rate(learning_rate),
        add_decayed_weights_after_step(weight_decay, learning_rate, mask, first_step=1))


@register("soap")
def _soap_from_config(h, schedule, decay_mask):
    """config.optimizer.soap: SOAP on the hidden matrices; AdamW with SOAP's b1, b2, eps and
    weight decay, at lr x rest_lr_multiplier, on embeddings, norms and biases; both decay the
    parameters `decay_mask` selects. block_size 0 (the default) is the reference's one
    preconditioner per matrix; levanter uses 256."""
    matrices = soap(schedule, mask=decay_mask, stacked=stacked_mask,
                    **SOAP.values(h, exclude=("rest_lr_multiplier",)))
    rest = optax.adamw(scaled_learning_rate(schedule, h.rest_lr_multiplier), b1=h.b1, b2=h.b2,
                       eps=h.eps, weight_decay=h.weight_decay, mask=decay_mask)
    return matrices_and_rest(matrices, rest)
