"""The pure train and eval steps: functions of (state, batch), jitted once by the trainer."""
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lm.model import mx as mx_lib
from lm.model import mx_probes
from lm.model.layers import MX_STATS
from lm.model.loss import chunked_next_token_loss, next_token_loss, sampled_label_loss
from optim.masks import STACK, is_stacked


class TrainState(NamedTuple):
    """Everything a checkpoint must hold to resume exactly (data order is a function of step)."""
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def layer_rms(prefix: str, tree) -> dict:
    """{"<prefix>/<param path>": RMS of that leaf}: per-weight scale statistics. A stacked
    leaf (scanned layers) gives one entry per layer, named as the unscanned model names it
    (layers/attn/... -> block_<i>/attn/...)."""
    out = {}
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        square = jnp.square(x.astype(jnp.float32))
        if not is_stacked(path):
            out[f"{prefix}/{name}"] = jnp.sqrt(jnp.mean(square))
            continue
        per_layer = jnp.sqrt(jnp.mean(square, axis=tuple(range(1, x.ndim))))
        for i in range(x.shape[0]):
            out[f"{prefix}/{name.replace(STACK, f'block_{i}', 1)}"] = per_layer[i]
    return out


def make_loss_fn(model, z_loss: float, loss_chunk: int = 0):
    """loss_fn(params, windows, probes=None) -> (objective, cross-entropy) of the next-token
    targets windows[:, 1:] given windows[:, :-1]; with `loss_chunk` positions per chunk the
    logits are never materialized whole (lm.model.loss.chunked_next_token_loss)."""
    cfg = model.cfg

    def loss_fn(params, windows, probes=None):
        variables = {"params": params, MX_STATS: probes or {}}
        inputs, targets = windows[:, :-1], windows[:, 1:]
        if not loss_chunk:
            return next_token_loss(model.apply(variables, inputs), targets, z_loss)
        hidden = model.apply(variables, inputs, hidden=True)
        head = params["embedding"] if cfg.tie_embeddings else params["unembed"]["kernel"].T
        return chunked_next_token_loss(hidden, head, targets, z_loss, loss_chunk,
                                       1 / cfg.width_mult, cfg.compute_dtype)

    return loss_fn


def mean_gradients(grad_fn, params, micro, zero_probes):
    """(objective, cross-entropy, gradient) averaged over the microbatches `micro` (M, rows,
    seq_len + 1), and the MX counts summed: gradient accumulation in a `lax.scan`, the same
    update as one big batch in less memory. One microbatch is one call of grad_fn, no loop."""
    if micro.shape[0] == 1:
        (objective, ce), (grads, counts) = grad_fn(params, micro[0], zero_probes)
        return objective, ce, grads, counts

    def accumulate(carry, windows):
        (objective, ce), (grads, counts) = grad_fn(params, windows, zero_probes)
        return jax.tree_util.tree_map(jnp.add, carry, (objective, ce, grads, counts)), None

    zeros = (jnp.zeros(()), jnp.zeros(()), jax.tree_util.tree_map(jnp.zeros_like, params),
             zero_probes)
    (objective, ce, grads, counts), _ = jax.lax.scan(accumulate, zeros, micro)
    objective, ce, grads = jax.tree_util.tree_map(lambda x: x / micro.shape[0],
                                                  (objective, ce, grads))
    return objective, ce, grads, counts


def make_train_step(model, tx: optax.GradientTransformation, microbatches: int, z_loss: float,
                    layer_stats: bool = False, loss_chunk: int = 0):
    """Returns train_step(state, windows) -> (state, metrics, layer_stats).

    `windows` is (batch, seq_len + 1) int32; inputs are windows[:, :-1], targets windows[:, 1:].
    The batch is split into `microbatches` equal parts (`mean_gradients`). Shardings are the
    caller's (`jax.jit` in/out_shardings, traced under `Sharder.jit`).
    With `layer_stats`, the step also returns the RMS of every parameter, gradient and update
    leaf (else {}): the trainer compiles that variant for the steps that log them
    (train.layer_stats_every), so the others do not compute them.

    With MX matmuls, `metrics` also holds their quantization diagnostics (lm.model.mx.diagnostics):
    the gradient of each layer's probe is its counts, summed here over layers and microbatches.

    `tx.update` also receives the loss functions that curvature-estimating optimizers (Sophia,
    optim/sophia.py) evaluate on the first microbatch: `obj_fn(params)` and
    `sampled_loss_fn(params, rng)`; other optimizers ignore them (nothing is traced for them).
    """

    loss_fn = make_loss_fn(model, z_loss, loss_chunk)
    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True)
    zero_probes = mx_probes(model)

    def train_step(state: TrainState, windows):
        # Microbatch m is rows m, m + M, m + 2M, ...: each device's contiguous share of a
        # sharded batch holds rows of every microbatch, so the split moves no data.
        micro = windows.reshape(-1, microbatches, windows.shape[-1]).swapaxes(0, 1)
        micro = nn.with_logical_constraint(micro, (None, "batch", None))
        objective, ce, grads, counts = mean_gradients(grad_fn, state.params, micro, zero_probes)

        def sampled_loss_fn(params, rng):
            return sampled_label_loss(model.apply({"params": params}, micro[0][:, :-1]), rng)

        updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                       obj_fn=lambda params: loss_fn(params, micro[0])[0],
                                       sampled_loss_fn=sampled_loss_fn)
        params = optax.apply_updates(state.params, updates)
        metrics = {"train/loss": ce, "train/objective": objective,
                   "train/grad_norm": optax.global_norm(grads),
                   "train/update_norm": optax.global_norm(updates),
                   "train/param_norm": optax.global_norm(params)}
        if zero_probes:
            metrics.update(mx_lib.diagnostics(model.cfg.mx,
                                              sum(jax.tree_util.tree_leaves(counts))))
        stats = {**layer_rms("params_rms", params), **layer_rms("grads_rms", grads),
                 **layer_rms("updates_rms", updates)} if layer_stats else {}
        return TrainState(state.step + 1, params, opt_state), metrics, stats

    return train_step


def make_eval_step(model, loss_chunk: int = 0):
    """Returns eval_step(params, windows) -> summed cross-entropy (nats) of the windows' targets."""
    loss_fn = make_loss_fn(model, 0.0, loss_chunk)

    def eval_step(params, windows):
        return loss_fn(params, windows)[1] * windows[:, 1:].size

    return eval_step
