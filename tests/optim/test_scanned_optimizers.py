"""Every registered optimizer treats the stacked parameters of scanned layers (model.scan_layers)
as independent per-layer tensors: the same gradients give the same updates as on the unrolled
model's block_0, block_1, ... (SOAP and Shampoo keep one preconditioner per layer, Adalayer one
second moment per layer, Muon orthogonalises each layer's matrix); weight decay, lr groups and
muP's per-layer learning rates see a stacked (L, m, n) kernel as L matrices."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim
from benchmarks.optimizers import short_run_config
from lm.model import ModelConfig, Transformer, init_params
from optim.masks import is_matrix, weight_decay_mask

N_LAYERS = 3


def stack_blocks(tree):
    blocks = [tree[f"block_{i}"] for i in range(N_LAYERS)]
    rest = {k: v for k, v in tree.items() if not k.startswith("block_")}
    return {**rest, "layers": jax.tree.map(lambda *x: jnp.stack(x), *blocks)}


def setup(name, scan: bool, mup: bool = False):
    config = short_run_config(name, 10)
    # Square matrices: random gradients give full-rank factors, whose eigenbases are unique (a
    # (32, 128) gradient's 128 x 128 factor has a 96-dimensional null space whose basis is
    # round-off, batched or not: tests/optim/test_soap.py says the same of the reference).
    config.model.update(dict(d_model=32, d_ff=32, n_layers=N_LAYERS, n_heads=2,
                             scan_layers=scan, mup_base_width=16 if mup else 0))
    config.schedule.update(dict(name="constant", warmup_steps=0))
    # No clipping: its global norm sums the two trees' leaves in different orders, a last-bit
    # difference that Shampoo's inverse roots amplify to ~1e-5.
    config.optimizer.grad_clip = 0.0
    config.optimizer.soap.precondition_frequency = 2
    config.optimizer.shampoo.precondition_frequency = 2
    unrolled = dataclasses.replace(ModelConfig.from_config(config.model, 64, "float32"),
                                   scan_layers=False)
    params = init_params(Transformer(unrolled), jax.random.PRNGKey(0), 8)
    if scan:
        params = stack_blocks(params)
    return config, params


def updates_after(name, scan: bool, steps: int = 4):
    config, params = setup(name, scan)
    opt = optim.build_from_config(config, params)
    rng = np.random.default_rng(0)
    unrolled = setup(name, False)[1]
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype) * 0.1,
                          unrolled) for _ in range(steps)]

    def square_sum(p):
        return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(p))

    update = jax.jit(lambda g, s, p: opt.tx.update(
        g, s, p, obj_fn=square_sum, sampled_loss_fn=lambda p, rng: (square_sum(p), 1)))
    state = opt.tx.init(params)
    for g in grads:
        u, state = update(stack_blocks(g) if scan else g, state, params)
        params = optax.apply_updates(params, u)
    return params


@pytest.mark.parametrize("name", optim.registered_optimizers())
def test_stacked_layers_update_as_separate_layers(name):
    scanned, unrolled = updates_after(name, True), updates_after(name, False)
    want = stack_blocks(unrolled)
    assert jax.tree.structure(scanned) == jax.tree.structure(want)
    for path, got in jax.tree_util.tree_leaves_with_path(scanned):
        np.testing.assert_allclose(got, _at(want, path), rtol=1e-5, atol=1e-7,
                                   err_msg=f"{name}: {jax.tree_util.keystr(path)}")


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def test_masks_see_per_layer_ranks():
    _, params = setup("adamw", True)
    config = short_run_config("adamw", 10)
    decay = weight_decay_mask(params, config.optimizer.groups)
    assert decay["layers"]["attn"]["query"]["kernel"]   # (L, m, n): matrices
    assert not decay["layers"]["attn_norm"]["scale"]     # (L, d): vectors
    matrices = jax.tree_util.tree_map_with_path(is_matrix, params)
    layers = matrices["layers"]
    assert layers["mlp"]["up"]["kernel"] and not layers["mlp_norm"]["scale"]
    lrs = optim.lr_multipliers(params, config.optimizer.groups, mup_width_mult=2.0)["layers"]
    assert lrs["attn"]["out"]["kernel"] == 0.5 and lrs["attn_norm"]["scale"] == 1
