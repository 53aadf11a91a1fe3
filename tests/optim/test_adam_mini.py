"""Adam-mini (optim/adam_mini.py) against the authors' PyTorch code (zyushun/Adam-mini, class
Adam_mini), replayed from tests/fixtures/optimizers/adam_mini.npz (make_adam_mini.py there).

The fixture's parameters carry Llama-style PyTorch names, which the reference partitions by;
here they sit at lm.model's paths (TORCH_TO_PATH: weights transposed to (in, out) kernels, the
embedding table as is), which optim.adam_mini partitions by. On "matrices" the transform sees
the reference's gradients; on "model" it computes its own from the one-layer transformer
(`transformer_loss`, the script's transformer_loss_torch in JAX), so an error feeds back.

Tolerances, over the fixture's 10 steps. The parameters (max over steps and tensors of
|ours - reference| / max|reference|, as tests/optim/reference.py): measured 5.8e-16 ("matrices")
and 1.3e-15 ("model") in float64, i.e. round-off, bound 1e-13; in float32 2.6e-7 and 4.1e-7, a
few ulps after 10 steps (the same arithmetic in another order: optax's W - lr (u + wd W) vs
PyTorch's W (1 - lr wd) - lr u, a mean vs a sum / n, lr * u vs addcdiv), bound 2e-6. The steps
are large (peak lr 0.03; every tensor moves by 0.1-0.4), and the displacement W_t - W_0 is
checked too, relative to the reference's max |W_t - W_0|: an error in one block's second
moment shows there at its full size (a per-tensor value, or the key split into n_heads or 1
block instead of n_kv_heads, gives 0.12-0.85). Its round-off is that of W over the smallest
displacement, the first step's (lr 0.01): ulp(3) / 0.01 ~ 3e-14 in float64 (measured 2.1e-14,
bound 1e-12), 2e-5 in float32 (measured 1.2e-5 and 5.1e-6, bound 1e-4).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim
from configs import base
from lm.model import ModelConfig, Transformer, init_params
from optim.adam_mini import adam_mini, block_kinds, scale_by_adam_mini
from optim.masks import path_name, weight_decay_mask
from tests.model.scanned import stack_blocks
from tests.optim import reference

TOLERANCE = {"float64": 1e-13, "float32": 2e-6}
DISPLACEMENT_TOL = {"float64": 1e-12, "float32": 1e-4}
PROBLEMS = [(p, d) for p in ("matrices", "model") for d in ("float64", "float32")]

TORCH_TO_PATH = {
    "embed_tokens.weight": ("embedding",),
    "layers.0.input_layernorm.weight": ("block_0", "attn_norm", "scale"),
    "layers.0.input_layernorm.bias": ("block_0", "attn_norm", "bias"),
    "layers.0.self_attn.q_proj.weight": ("block_0", "attn", "query", "kernel"),
    "layers.0.self_attn.k_proj.weight": ("block_0", "attn", "key", "kernel"),
    "layers.0.self_attn.v_proj.weight": ("block_0", "attn", "value", "kernel"),
    "layers.0.self_attn.o_proj.weight": ("block_0", "attn", "out", "kernel"),
    "layers.0.post_attention_layernorm.weight": ("block_0", "mlp_norm", "scale"),
    "layers.0.mlp.up_proj.weight": ("block_0", "mlp", "up", "kernel"),
    "layers.0.mlp.down_proj.weight": ("block_0", "mlp", "down", "kernel"),
    "norm.weight": ("final_norm", "scale"),
    "lm_head.weight": ("unembed", "kernel"),
}


@functools.cache
def fixture():
    return reference.load("adam_mini")


def hyper() -> dict:
    return fixture().meta["hyperparameters"]


# --------------------------------------------------------------------------- layouts


def to_tree(flat: dict, layout: str = "unrolled") -> dict:
    """The fixture's PyTorch-named (out, in) tensors as lm.model's nested (in, out) params; with
    layout "stacked", the blocks stacked as scanned layers are."""
    tree = {}
    for name, path in TORCH_TO_PATH.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = flat[name].T if path[-1] == "kernel" else flat[name]
    return stack_blocks(tree) if layout == "stacked" else tree


def to_flat(tree: dict) -> dict:
    """to_tree's inverse (a stacked tree's single layer taken back out)."""
    if "layers" in tree:
        tree = {**{k: v for k, v in tree.items() if k != "layers"},
                "block_0": jax.tree.map(lambda x: x[0], tree["layers"])}
    flat = {}
    for name, path in TORCH_TO_PATH.items():
        node = tree
        for key in path:
            node = node[key]
        flat[name] = node.T if path[-1] == "kernel" else node
    return flat


def transformer_loss(p: dict, tokens, h: dict):
    """make_adam_mini.transformer_loss_torch in JAX, on the PyTorch-layout tensors `p`."""
    n_heads, n_kv = h["n_heads"], h["n_kv_heads"]
    head_dim = h["dim"] // n_heads
    vocab = p["embed_tokens.weight"].shape[0]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    batch, seq = inputs.shape

    def norm(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        y = (x - mean) / jnp.sqrt(var + h["layer_norm_eps"]) * p[name + ".weight"]
        return y + p[name + ".bias"] if name + ".bias" in p else y

    def project(x, name, heads):
        return (x @ p[f"layers.0.self_attn.{name}.weight"].T).reshape(batch, seq, heads,
                                                                     head_dim)

    x = p["embed_tokens.weight"][inputs]
    y = norm(x, "layers.0.input_layernorm")
    q = project(y, "q_proj", n_heads)
    k = jnp.repeat(project(y, "k_proj", n_kv), n_heads // n_kv, axis=2)
    v = jnp.repeat(project(y, "v_proj", n_kv), n_heads // n_kv, axis=2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim)
    scores = jnp.where(jnp.tril(jnp.ones((seq, seq), bool)), scores, -jnp.inf)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, -1), v)
    x = x + out.reshape(batch, seq, -1) @ p["layers.0.self_attn.o_proj.weight"].T
    y = jax.nn.silu(norm(x, "layers.0.post_attention_layernorm")
                    @ p["layers.0.mlp.up_proj.weight"].T)
    x = x + y @ p["layers.0.mlp.down_proj.weight"].T
    logits = (norm(x, "norm") @ p["lm_head.weight"].T).reshape(-1, vocab)
    log_probs = jax.nn.log_softmax(logits, -1)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets.reshape(-1, 1), axis=1))


# --------------------------------------------------------------------------- replay


def make_tx(schedule):
    """adam_mini with the fixture's hyperparameters; weight decay on the matrices (the
    reference exempts names containing "norm" and "bias", here the vectors)."""
    h = hyper()
    return adam_mini(schedule, b1=h["betas"][0], b2=h["betas"][1], eps=h["eps"],
                     weight_decay=h["weight_decay"], n_heads=h["n_heads"],
                     n_kv_heads=h["n_kv_heads"],
                     mask=functools.partial(weight_decay_mask, groups={}))


def replay(problem: str, dtype: str, layout: str = "unrolled") -> dict:
    """name -> (steps + 1, *shape) parameters of our transform, in the fixture's layout."""
    fx = fixture()
    lrs = fx[f"{problem}/{dtype}/lrs"]
    init = reference.section(fx, problem, dtype, "init")
    grads = reference.section(fx, problem, dtype, "grads")
    data = reference.section(fx, problem, dtype, "data")
    with jax.enable_x64(dtype == "float64"):
        lr_array = jnp.asarray(lrs, dtype)
        tx = make_tx(lambda count: lr_array[count])
        params = to_tree({k: jnp.asarray(v, dtype) for k, v in init.items()}, layout)
        state = tx.init(params)
        tokens = jnp.asarray(data["tokens"]).astype(jnp.int32) if data else None

        @jax.jit
        def step(params, state, g):
            if problem == "model":
                g = jax.grad(lambda tree: transformer_loss(to_flat(tree), tokens, hyper()))(
                    params)
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state

        history = [to_flat(params)]
        for t in range(len(lrs)):
            g = None if problem == "model" else to_tree(
                {k: jnp.asarray(v[t], dtype) for k, v in grads.items()}, layout)
            params, state = step(params, state, g)
            history.append(to_flat(params))
        return {k: np.stack([np.asarray(snapshot[k], np.float64) for snapshot in history])
                for k in init}


def errors(problem: str, dtype: str, layout: str = "unrolled") -> tuple[float, float]:
    """(max relative error of the parameters, of their displacement from the start), each per
    tensor and step relative to the reference's max |.|, maxed over tensors and steps."""
    ours = replay(problem, dtype, layout)
    want = reference.section(fixture(), problem, dtype, "params")
    worst, moved = 0.0, 0.0
    for k, ref in want.items():
        ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
        got = ours[k].reshape(len(ref), -1)
        diff = np.max(np.abs(got - ref), axis=1)
        worst = max(worst, float(np.max(diff / np.max(np.abs(ref), axis=1))))
        shift = np.max(np.abs(ref[1:] - ref[0]), axis=1)
        moved = max(moved, float(np.max(diff[1:] / shift)))
    return worst, moved


@pytest.mark.parametrize("problem, dtype", PROBLEMS)
def test_matches_the_reference(problem, dtype):
    worst, moved = errors(problem, dtype)
    assert worst < TOLERANCE[dtype], (worst, moved)
    assert moved < DISPLACEMENT_TOL[dtype], (worst, moved)


@pytest.mark.parametrize("problem", ("matrices", "model"))
def test_stacked_layers_match_the_reference(problem):
    """The same block scanned (a "layers" stack, here of one layer): one statistic per block of
    the layer, not of the stack."""
    worst, moved = errors(problem, "float64", "stacked")
    assert worst < TOLERANCE["float64"] and moved < DISPLACEMENT_TOL["float64"], (worst, moved)


def test_fixture_names_what_the_reference_partitions():
    meta = fixture().meta
    assert meta["commit"] == "402aadfed23719f3b92c8e78b5d49ad499ff7ada"
    assert meta["class"] == "Adam_mini" and meta["hyperparameters"]["weight_decay"] > 0
    names = set(reference.section(fixture(), "matrices", "float64", "init"))
    assert names == set(TORCH_TO_PATH)


# --------------------------------------------------------------------------- the partition


def model_params(scan_layers: bool, **model):
    config = base.get_config()
    config.optimizer.name = "adam_mini"
    config.model.update(dict(d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, qk_norm=True,
                             norm="layernorm", tie_embeddings=False, activation="swiglu",
                             scan_layers=scan_layers))
    config.model.update(model)
    net = Transformer(ModelConfig.from_config(config.model, 40, "float32"))
    return config, jax.eval_shape(lambda: init_params(net, jax.random.PRNGKey(0), 8))


WANT_KINDS = {"embedding": "token", "unembed/kernel": "token", "attn/query/kernel": "head",
              "attn/key/kernel": "head", "attn/value/kernel": "neuron",
              "attn/out/kernel": "neuron", "mlp/up/kernel": "neuron",
              "mlp/gate/kernel": "neuron", "mlp/down/kernel": "neuron", "bias": "coordinate",
              "scale": "tensor"}


@pytest.mark.parametrize("scan_layers", (False, True))
def test_lm_model_parameters_fall_into_the_papers_blocks(scan_layers):
    """Every parameter of lm.model (LayerNorm, QK-norm, SwiGLU, untied head, GQA) gets the
    block kind of Algorithm 3, and the state one second moment per block and layer."""
    config, params = model_params(scan_layers)
    opt = optim.build_from_config(config, params)
    nu = jax.eval_shape(opt.tx.init, params)[1][0].nu
    layers = (2,) if scan_layers else ()
    want_nu = {"embedding": (40, 1), "unembed/kernel": (1, 40),
               "attn/query/kernel": layers + (1, 4, 1), "attn/key/kernel": layers + (1, 2, 1),
               "attn/value/kernel": layers + (1, 8), "attn/out/kernel": layers + (1, 16),
               "mlp/up/kernel": layers + (1, 64), "mlp/down/kernel": layers + (1, 16)}
    kinds = block_kinds(params)
    for path, kind in jax.tree_util.tree_leaves_with_path(kinds):
        name = path_name(path)
        key = next(k for k in WANT_KINDS if name.endswith(k))
        assert kind == WANT_KINDS[key], name
        shape = nu
        for part in name.split("/"):
            shape = shape[part]
        if key in want_nu:
            assert shape.shape == want_nu[key], name
        elif key == "scale":
            assert shape.size == (2 if scan_layers and name.startswith("layers") else 1), name
    value = jax.tree_util.tree_leaves_with_path(block_kinds(params, single_value_lr=True))
    assert [k for p, k in value if path_name(p).endswith("value/kernel")] == (
        ["tensor"] * (1 if scan_layers else 2))


def test_first_step_divides_by_each_blocks_rms():
    """At step 1 the update is -lr g / (sqrt(mean of g^2 over the block) + eps): per token of
    the embedding (rows) and the untied head (columns), per head of query (n_heads groups of
    columns) and key (n_kv_heads), per column of value / out / MLP kernels, per tensor for norm
    scales, per entry for biases; stacked layers each on their own."""
    _, params = model_params(True)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    tx = scale_by_adam_mini(n_heads=4, n_kv_heads=2, eps=0.0)
    updates, _ = jax.jit(tx.update)(grads, tx.init(grads))

    def rms(g, axes):
        return np.sqrt(np.mean(np.square(g), axis=axes, keepdims=True))

    def expected(path, g):
        g, name = np.asarray(g), path_name(path)
        if name.endswith("/bias"):
            return np.sign(g)
        if name == "embedding":
            return g / rms(g, -1)
        if name == "unembed/kernel" or name.endswith(("value/kernel", "out/kernel",
                                                      "up/kernel", "gate/kernel",
                                                      "down/kernel")):
            return g / rms(g, -2)
        if name.endswith(("query/kernel", "key/kernel")):
            heads = 4 if "query" in name else 2
            view = g.reshape(g.shape[:-1] + (heads, -1))
            return (view / rms(view, (-3, -1))).reshape(g.shape)
        return g / rms(g, tuple(range(1 if name.startswith("layers") else 0, g.ndim)))

    for (path, u), g in zip(jax.tree_util.tree_leaves_with_path(updates),
                            jax.tree.leaves(grads)):
        np.testing.assert_allclose(u, expected(path, g), rtol=2e-6, err_msg=path_name(path))


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, message", [
    (dict(b1=1.0), "b1"), (dict(b2=-0.1), "b2"), (dict(eps=-1e-8), "eps"),
    (dict(n_heads=0), "n_heads"), (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
    (dict(n_heads=4, n_kv_heads=-1), "n_kv_heads"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scale_by_adam_mini(**kwargs)


def test_bad_learning_rate_or_weight_decay_is_refused():
    with pytest.raises(ValueError, match="learning_rate"):
        adam_mini(-1.0, n_heads=2)
    with pytest.raises(ValueError, match="weight_decay"):
        adam_mini(1e-3, weight_decay=-0.1, n_heads=2)


def test_heads_must_be_given_and_divide_the_kernel():
    params = {"attn": {"query": {"kernel": jnp.zeros((8, 8))}}}
    with pytest.raises(ValueError, match="pass n_heads"):
        scale_by_adam_mini().init(params)
    with pytest.raises(ValueError, match="not a multiple of its 3 heads"):
        scale_by_adam_mini(n_heads=3).init(params)


def test_registered_with_the_models_head_counts():
    """The registry passes config.model: the query's blocks are model.n_heads heads, the key's
    model.n_kv_heads (0: n_heads); without the model it refuses."""
    config, params = model_params(False, n_kv_heads=0)
    nu = jax.eval_shape(optim.build_from_config(config, params).tx.init, params)[1][0].nu
    assert nu["block_0"]["attn"]["key"]["kernel"].shape == (1, 4, 1)
    schedule = optim.make_schedule(config.schedule, config.optimizer.lr, 1000)
    with pytest.raises(ValueError, match="model=config.model"):
        optim.build(config.optimizer, schedule, params)
