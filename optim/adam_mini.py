"""Adam-mini: Adam with one second moment per Hessian block instead of one per coordinate.

Zhang, Chen, Li, Ding, Wu, Kingma, Ye, Luo & Sun 2024, "Adam-mini: Use Fewer Learning Rates To
Gain More", arXiv:2406.16793 (ICLR 2025), following the authors' reference PyTorch code
(github.com/zyushun/Adam-mini, adam_mini/adam_mini.py, class Adam_mini, version 1.1.1) step for
step.

Algorithm 1 of the paper, for every parameter block b (a slice W_b of a weight W, with gradient
G_b and B_b entries) at the 1-based step t, learning rate eta_t and weight decay lambda:
    W   <- W - eta_t lambda W                                  (decoupled weight decay)
    M   <- b1 M + (1 - b1) G                                   (Adam's first moment, per entry)
    v_b <- b2 v_b + (1 - b2) mean(G_b * G_b)                   (ONE second moment per block)
    W_b <- W_b - eta_t [M_b / (1 - b1^t)] / (sqrt(v_b / (1 - b2^t)) + eps)
i.e. Adam whose v is the block mean of Adam's, so that v takes one float per block instead of
one per entry (about half of Adam's optimizer memory). The partition follows the Hessian's
near-block-diagonal structure (the paper's partition for Transformers); the reference decides it
by parameter names, optiscale by parameter paths (`block_kind`). Embedding and output get one
second moment per token in the reference at this commit (v1.1.1: "Use one lr per token"), not
Adam's per-entry one that descriptions of earlier versions give them:

    kind         reference (torch names, (out, in) weights)   optiscale ((in, out) kernels)
    "token"      embed / embd / wte, lm_head / output:        embedding (vocab, d): per ROW;
                 one per row (token)                          unembed/kernel (d, vocab): per
                                                              COLUMN
    "head"       q_proj / wq / query, k_proj / wk / key:      attn/query/kernel (d, H * hd):
                 rows viewed as blocks of dim*dim/n_heads     the columns in n_heads groups;
                 entries, i.e. one per head                   attn/key/kernel: n_kv_heads groups
    "neuron"     v_proj / wv / value, o_proj / wo /           attn/value, attn/out, mlp/up,
                 attn.proj, mlp / feed_forward / linear:      mlp/gate, mlp/down kernels: per
                 one per row (output neuron)                  COLUMN (output neuron)
    "coordinate" any name containing "bias": plain Adam       a "bias" leaf (LayerNorm's)
    "tensor"     everything else (norm scales): one per       norm scales, QK-norm scales and
                 tensor                                       any other parameter

A stack of scanned layers (optim.masks.is_stacked) keeps axis 0: one statistic per block of
every layer. The head count of a kernel comes from the model (n_heads, n_kv_heads); its head
width is the kernel's column count / heads, which is the reference's dim / n_heads whenever
n_heads * head_dim = d_model (the only case the reference's dim * dim / n_heads block handles).
`single_value_lr` is the README's `optimizer.wv_names = {}`: the value projection then falls to
the reference's default, one second moment per tensor.

As in the reference: the bias corrections are Adam's (1 - b1^t, sqrt(1 - b2^t), eps added after
the corrected root); the weight decay is decoupled and scaled by the lr, W(1 - eta_t lambda),
applied before the step (the same as optax.adamw's W - eta_t (u + lambda W)); which parameters
decay is the caller's `mask` (the reference exempts names containing "norm", "ln" or "bias";
optiscale's default rule exempts vectors and, by the base config's group, embeddings).

Written as optax writes its optimizers: `scale_by_adam_mini` is the direction, chained with
decoupled weight decay and the learning rate in `adam_mini`.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim import checks
from optim.decay import decay_then_lr
from optim.hparams.adam_mini import ADAM_MINI
from optim.masks import is_embedding, is_stacked, layer_ndim, path_name
from optim.numerics import one_minus_power
from optim.registry import register

KINDS = ("coordinate", "token", "head", "neuron", "tensor")
HEAD_LAYERS = ("query", "key")  # attn/<name>/kernel: one second moment per head
NEURON_LAYERS = ("value", "out", "up", "gate", "down")  # one per output neuron (column)


class ScaleByAdamMiniState(NamedTuple):
    """count: updates done so far (int32); mu: the first moment, like the params; nu: per
    parameter, the blocks' second moments, shaped as the gradient viewed in blocks with the
    averaged axes kept as size 1 (an (in, out) kernel of kind "neuron": (1, out); "head":
    (1, heads, 1); "token": (vocab, 1) or (1, vocab); "tensor": ones; "coordinate": the
    parameter's shape), after a leading layer axis if stacked."""
    count: jax.Array
    mu: Any
    nu: Any


def block_kind(path, leaf, single_value_lr: bool = False) -> str:
    """The Adam-mini block kind (KINDS, module docstring) of the parameter at `path`: by its
    last path components, for lm.model's names; a parameter it does not recognise gets one
    second moment per tensor, the reference's default."""
    names = path_name(path).split("/")
    matrix = layer_ndim(path, leaf) == 2
    if names[-1] == "bias":
        return "coordinate"
    if is_embedding(path):
        return "token" if matrix else "tensor"
    if matrix and names[-1] == "kernel" and len(names) >= 2:
        if names[-2] in HEAD_LAYERS:
            return "head"
        if names[-2] in NEURON_LAYERS and not (single_value_lr and names[-2] == "value"):
            return "neuron"
    return "tensor"


def block_kinds(params, single_value_lr: bool = False):
    """A pytree like `params` of each parameter's block kind (block_kind)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: block_kind(path, p, single_value_lr), params)


def _layout(path, shape, kind: str, heads: int | None) -> tuple[tuple, tuple]:
    """(the shape the gradient is viewed in, the axes each block averages over), counted from
    the end so that a stacked parameter's layer axis stays a batch axis."""
    own = len(shape) - is_stacked(path)
    if kind == "coordinate":
        return tuple(shape), ()
    if kind == "token":  # a table (vocab, d): rows; a kernel (d, vocab): columns
        return tuple(shape), ((-2,) if path_name(path).endswith("kernel") else (-1,))
    if kind == "neuron":
        return tuple(shape), (-2,)
    if kind == "head":
        name = path_name(path)
        if heads is None:
            raise ValueError(f"Adam-mini: {name} is a query or key projection, whose blocks "
                             "are heads: pass n_heads (and n_kv_heads for grouped-query "
                             "attention)")
        width = shape[-1]
        if width % heads:
            raise ValueError(f"Adam-mini: {name} has {width} columns, not a multiple of its "
                             f"{heads} heads")
        return tuple(shape[:-1]) + (heads, width // heads), (-3, -1)
    return tuple(shape), tuple(range(-own, 0))


def _stats_shape(view, axes) -> tuple:
    axes = {a % len(view) for a in axes}
    return tuple(1 if i in axes else size for i, size in enumerate(view))


@ADAM_MINI.defaults_of(exclude=("weight_decay",))
def scale_by_adam_mini(*, b1, b2, eps, single_value_lr, n_heads: int | None = None,
                       n_kv_heads: int = 0) -> optax.GradientTransformation:
    """Adam-mini's direction (the module docstring, without learning rate and weight decay):
    M_hat / (sqrt(v_hat_b) + eps), with one v per block of the parameter's kind.

    Args:
      b1: first-moment decay.
      b2: decay of the blocks' mean squared gradients.
      eps: added to the bias-corrected sqrt(v).
      single_value_lr: one second moment for the whole value projection (kind "tensor").
      n_heads: query heads (model.n_heads); needed when the params hold attn/query or
        attn/key kernels.
      n_kv_heads: key/value heads of grouped-query attention; 0: n_heads.
    """
    checks.in_unit_interval("b1", b1)
    checks.in_unit_interval("b2", b2)
    checks.nonnegative("eps", eps)
    if n_heads is not None:
        checks.integer("n_heads", n_heads)
        checks.integer("n_kv_heads", n_kv_heads, minimum=0)
        if n_heads % (n_kv_heads or n_heads):
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
    kv_heads = (n_kv_heads or n_heads) if n_heads is not None else None

    def layouts(tree) -> list:
        """(view, axes) of every leaf, in the order of jax.tree.leaves."""
        found = []
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            kind = block_kind(path, leaf, single_value_lr)
            heads = n_heads if path_name(path).split("/")[-2:-1] == ["query"] else kv_heads
            found.append(_layout(path, jnp.shape(leaf), kind, heads))
        return found

    def init_fn(params):
        treedef = jax.tree.structure(params)
        nu = [jnp.zeros(_stats_shape(view, axes), p.dtype)
              for p, (view, axes) in zip(jax.tree.leaves(params), layouts(params))]
        return ScaleByAdamMiniState(count=jnp.zeros([], jnp.int32),
                                    mu=jax.tree.map(jnp.zeros_like, params),
                                    nu=treedef.unflatten(nu))

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        bc1 = one_minus_power(b1, count)
        sqrt_bc2 = jnp.sqrt(one_minus_power(b2, count))
        treedef = jax.tree.structure(updates)
        out, mu, nu = [], [], []
        for g, m, v, (view, axes) in zip(jax.tree.leaves(updates),
                                          treedef.flatten_up_to(state.mu),
                                          treedef.flatten_up_to(state.nu), layouts(updates)):
            m = m + (1 - b1) * (g - m)  # the reference's lerp
            square = jnp.square(g).reshape(view)
            v = b2 * v + (1 - b2) * (jnp.mean(square, axis=axes, keepdims=True)
                                     if axes else square)
            denom = jnp.sqrt(v) / sqrt_bc2.astype(v.dtype) + eps
            step = (1 / bc1).astype(v.dtype) / denom
            out.append((m.reshape(view) * step).reshape(g.shape).astype(g.dtype))
            mu.append(m)
            nu.append(v)
        new = [treedef.unflatten(column) for column in (out, mu, nu)]
        return new[0], ScaleByAdamMiniState(count, new[1], new[2])

    return optax.GradientTransformation(init_fn, update_fn)


@ADAM_MINI.defaults_of()
def adam_mini(learning_rate: optax.ScalarOrSchedule, *, b1, b2, eps, weight_decay,
              single_value_lr, n_heads: int | None = None, n_kv_heads: int = 0,
              mask=None) -> optax.GradientTransformation:
    """Adam-mini with optiscale's defaults (optim/hparams/adam_mini.py): `scale_by_adam_mini`,
    decoupled weight decay W <- W - eta_t weight_decay W on the parameters `mask` selects (None:
    all; optax's `mask`) and the learning rate (a float or a schedule of the 0-based update
    count). `update` needs `params` when weight_decay > 0.

    Args:
      learning_rate: eta_t.
      b1, b2, eps, single_value_lr, n_heads, n_kv_heads: as in scale_by_adam_mini.
      weight_decay: lambda.
      mask: the parameters weight decay applies to.
    """
    checks.learning_rate(learning_rate)
    checks.nonnegative("weight_decay", weight_decay)
    return optax.chain(
        scale_by_adam_mini(b1=b1, b2=b2, eps=eps, single_value_lr=single_value_lr,
                           n_heads=n_heads, n_kv_heads=n_kv_heads),
        *decay_then_lr(learning_rate, weight_decay, mask))


@register("adam_mini", needs_model=True)
def _adam_mini_from_config(h, schedule, decay_mask, model):
    """config.optimizer.adam_mini, with the head counts of config.model (the query and key
    kernels' blocks are its heads)."""
    return adam_mini(schedule, mask=decay_mask, n_heads=model.n_heads,
                     n_kv_heads=model.n_kv_heads, **ADAM_MINI.values(h))
