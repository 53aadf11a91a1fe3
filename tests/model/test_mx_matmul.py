"""MX matmuls (lm/model/mx.py): forward and the three re-quantized backward GEMMs, the model's entry
point and config, and a short MXFP8 training run against float32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lm import train
from lm.model import mx
from lm.train.config_checks import ConfigError, check_config
from lm.train.metrics_log import read_metrics

# A different format for every operand kind, so that each GEMM's choice is visible.
DISTINCT = mx.MatmulFormats(w="mxfp8_e4m3", a="mxfp8_e5m2", w_bp="mxfp6_e3m2",
                            a_bp="mxfp6_e2m3", g_ex="mxint8", g_os="mxfp4_e2m1")


def operands(seed=0, shape=(3, 40, 48), n=36):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (shape[-1], n))
    g = jax.random.normal(kg, shape[:-1] + (n,))
    return x, w, g


def hi(a, b, spec):
    return jnp.einsum(spec, a, b, precision=jax.lax.Precision.HIGHEST)


def vjp(x, w, g, formats):
    y, pullback = jax.vjp(lambda x, w: mx.mx_matmul(x, w, formats), x, w)
    return (y, *pullback(g))


@pytest.mark.slow
def test_forward_quantizes_both_operands_along_the_reduction_axis():
    x, w, _ = operands()
    y = mx.mx_matmul(x, w, "mxfp8_e4m3")
    expected = hi(mx.quantize(x, "mxfp8_e4m3", -1), mx.quantize(w, "mxfp8_e4m3", 0),
                  "btk,kn->btn")
    np.testing.assert_array_equal(y, expected)
    assert 0 < float(jnp.max(jnp.abs(y - x @ w))) < 0.1 * float(jnp.max(jnp.abs(x @ w)))


@pytest.mark.slow
def test_backward_requantizes_each_gemm_along_its_own_reduction_axis():
    x, w, g = operands()
    f = DISTINCT.resolved()
    y, dx, dw = vjp(x, w, g, f)
    np.testing.assert_array_equal(
        dx, hi(mx.quantize(g, f.g_os, -1), mx.quantize(w, f.w_bp, -1), "btn,kn->btk"))
    np.testing.assert_array_equal(
        dw, hi(mx.quantize(x, f.a_bp, -2), mx.quantize(g, f.g_ex, -2), "btk,btn->kn"))


@pytest.mark.slow
def test_backward_gemms_see_quantized_operands(monkeypatch):
    """Intercepts the quantizer: the backward pass quantizes g twice (for dx along the outputs,
    for dW along the tokens), w along its output axis and x along the tokens."""
    x, w, g = operands(shape=(2, 36, 40), n=44)
    _, pullback = jax.vjp(lambda x, w: mx.mx_matmul(x, w, DISTINCT), x, w)
    calls = []
    real = mx.quantize_with_stats

    def recording(arr, fmt, axis, *args, **kwargs):
        calls.append((tuple(arr.shape), fmt, axis))
        return real(arr, fmt, axis, *args, **kwargs)

    monkeypatch.setattr(mx, "quantize_with_stats", recording)
    pullback(g)
    assert sorted(calls) == sorted([((2, 36, 44), "mxfp4_e2m1", -1), ((40, 44), "mxfp6_e3m2", -1),
                                    ((2, 36, 40), "mxfp6_e2m3", -2),
                                    ((2, 36, 44), "mxint8", -2)])


def test_scaled_dot_backend_matches_the_emulation():
    """The native path's elements and scales are the emulation's: on CPU (XLA's decomposition
    of scaled_dot) every GEMM, gradient and count agrees, ragged token blocks included."""
    x, w, g = operands(shape=(2, 40, 64), n=96)
    x = x.at[0, 3, :5].set(jnp.array([1e-30, 500.0, -3.0, 0.0, 7.0]))
    native = mx.MatmulFormats(w="mxfp8_e4m3", a="mxfp8_e5m2", w_bp="mxfp4_e2m1",
                              a_bp="mxfp8_e4m3", g_ex="mxfp8_e5m2", g_os="mxfp4_e2m1")

    def run(formats):
        def loss(x, w, probe):
            return jnp.sum(mx.mx_matmul(x, w, formats, probe=probe) * g)
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(x, w,
                                                                   jnp.zeros(mx.PROBE_SHAPE))

    emulated = run(native)
    for fast, ref in zip(jax.tree_util.tree_leaves(run(native._replace(backend="scaled_dot"))),
                         jax.tree_util.tree_leaves(emulated)):
        np.testing.assert_allclose(fast, ref, rtol=2e-6, atol=1e-5)
    counts_fast, counts_ref = run(native._replace(backend="scaled_dot"))[1][2], emulated[1][2]
    np.testing.assert_array_equal(counts_fast, counts_ref)
    with pytest.raises(ValueError, match="MX backend 'cudnn' is not one of"):
        mx.mx_matmul(x, w, native._replace(backend="cudnn"))


def test_straight_through_gradient_without_quantization():
    """Unquantized operands: exactly the plain matmul's value and gradients; forward-only
    quantization: the backward GEMMs on the unquantized operands."""
    x, w, g = operands()
    plain_y, plain_pullback = jax.vjp(lambda x, w: hi(x, w, "btk,kn->btn"), x, w)
    y, dx, dw = vjp(x, w, g, mx.MatmulFormats().resolved())
    np.testing.assert_array_equal(y, plain_y)
    for got, want in zip((dx, dw), plain_pullback(g)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    _, dx_fwd_only, dw_fwd_only = vjp(x, w, g, DISTINCT._replace(quantize_backprop=False)
                                      .resolved())
    np.testing.assert_array_equal(dx_fwd_only, dx)
    np.testing.assert_array_equal(dw_fwd_only, dw)


def test_gradient_matches_finite_differences_of_the_unquantized_product():
    x, w, _ = operands(shape=(1, 8, 16), n=4)
    f = mx.MatmulFormats().resolved()

    def loss(x, w):
        return jnp.sum(jnp.tanh(mx.mx_matmul(x, w, f)))
    grad_w = jax.grad(loss, argnums=1)(x, w)
    eps = 1e-2
    e = jnp.zeros_like(w).at[3, 2].set(eps)
    numeric = (loss(x, w + e) - loss(x, w - e)) / (2 * eps)
    assert float(grad_w[3, 2]) == pytest.approx(float(numeric), rel=1e-3)


def test_unset_backward_formats_default_like_microxcaling():
    f = mx.MatmulFormats(w="mxfp8_e4m3", a="mxfp8_e5m2").resolved()
    assert (f.w_bp, f.a_bp, f.g_ex, f.g_os) == ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp8_e5m2",
                                                "mxfp8_e5m2")


def test_precision_config_is_checked():
    c = base.get_config()
    assert mx.formats_from_config(c.precision) == {"mx": None, "mx_layers": ()}
    c.precision.mx_weights = "mxfp8_e4m3"
    c.precision.mx_activations = "bfloat16"
    got = mx.formats_from_config(c.precision)
    assert got["mx"].w == "mxfp8_e4m3" and got["mx"].g_os == "bfloat16"
    assert got["mx_layers"] == mx.MX_LAYERS
    c.precision.mx_weights = "fp8"
    with pytest.raises(ConfigError, match="precision.mx_weights='fp8' is not an MX format"):
        check_config(c)
    c.precision.mx_weights = "mxfp4_e2m1"
    c.precision.mx_layers = ("qkv", "embedding")
    with pytest.raises(ConfigError, match=r"mx_layers has \['embedding'\]"):
        check_config(c)


def test_quantize_with_stats_counts_saturation_clipped_blocks_and_underflow():
    """E4M3, blocks of 4. Block 0 (scale 2^(3-8)): 15 and 14.4 become 480 and 460.8 > 448,
    so both saturate and the block clips; 2^-8 becomes 2^-3, representable. Block 1 (scale
    2^-8): 2^-19 becomes 2^-11, under half the smallest subnormal 2^-9, so it underflows; its
    zero is not counted as underflow."""
    x = jnp.array([15.0, 14.4, 2.0 ** -8, 1.0,
                   1.0, 2.0 ** -19, 0.0, -1.0])
    q, stats = mx.quantize_with_stats(x, "mxfp8_e4m3", 0, block_size=4)
    np.testing.assert_array_equal(q, mx.quantize(x, "mxfp8_e4m3", 0, block_size=4))
    counts = dict(zip(mx.STATS, np.asarray(stats)))
    assert counts == {"saturated": 2, "clipped_blocks": 1, "underflow": 1, "elements": 8,
                      "blocks": 2, "nonzero": 7}
    assert float(q[5]) == 0.0 and float(q[0]) == 14.0  # saturated to 448 * 2^-5


@pytest.mark.slow
def test_probe_gradient_carries_every_operands_counts():
    x, w, g = operands(shape=(2, 64, 32), n=64)
    f = DISTINCT.resolved()

    def loss(x, w, probe):
        return jnp.sum(mx.mx_matmul(x, w, f, probe=probe) * g)

    counts = jax.grad(loss, argnums=2)(x, w, jnp.zeros(mx.PROBE_SHAPE))
    expected = [mx.quantize_with_stats(w, f.w, 0)[1], mx.quantize_with_stats(x, f.a, -1)[1],
                mx.quantize_with_stats(w, f.w_bp, -1)[1],
                mx.quantize_with_stats(x, f.a_bp, -2)[1],
                mx.quantize_with_stats(g, f.g_ex, -2)[1],
                mx.quantize_with_stats(g, f.g_os, -1)[1]]
    np.testing.assert_array_equal(counts, jnp.stack(expected))
    fractions = mx.diagnostics(f, counts)
    assert len(fractions) == 18 and 0 < float(fractions["mx/grads_for_inputs/saturated"]) < 1
    only_forward = mx.diagnostics(f._replace(quantize_backprop=False), counts)
    assert sorted(only_forward) == [f"mx/{kind}/{stat}" for kind in ("activations", "weights")
                                    for stat in ("clipped_blocks", "saturated", "underflow")]


def test_bfloat16_rounding_ties():
    x = jnp.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 1 + 2 ** -8 + 2 ** -20, 0.0])
    np.testing.assert_array_equal(mx.round_to_bfloat16(x, "even"),
                                  [1.0, 1 + 2 ** -6, -1.0, 1 + 2 ** -7, 0.0])
    np.testing.assert_array_equal(mx.round_to_bfloat16(x, "half_away"),
                                  [1 + 2 ** -7, 1 + 2 ** -6, -(1 + 2 ** -7), 1 + 2 ** -7, 0.0])


def test_norm_affine_handling(tiny_config):
    from lm.model.layers import Norm
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8))
    params = {"params": {"scale": jnp.full((8,), 1 + 2 ** -9), "bias": jnp.full((8,), 0.1)}}
    full = Norm("layernorm", jnp.float32).apply(params, x)
    bf16 = Norm("layernorm", jnp.float32, affine="bfloat16").apply(params, x)
    normed = Norm("layernorm", jnp.float32, affine="none").apply({}, x)
    np.testing.assert_array_equal(bf16, normed * 1.0 + mx.round_to_bfloat16(0.1, "even"))
    np.testing.assert_allclose(full, normed * (1 + 2 ** -9) + 0.1, rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(Norm("layernorm", jnp.float32, affine="bfloat16")
                                       .apply(p, x) ** 2))(params)
    full_grads = jax.grad(lambda p: jnp.sum(Norm("layernorm", jnp.float32).apply(p, x) ** 2))(
        {"params": {"scale": jnp.ones(8), "bias": jnp.full((8,), 0.10009765625)}})
    np.testing.assert_allclose(grads["params"]["scale"], full_grads["params"]["scale"],
                               rtol=1e-6)  # straight through, at the rounded values
    tiny_config.precision.norm_affine = "layer"
    with pytest.raises(ConfigError, match="precision.norm_affine='layer' is not one of"):
        check_config(tiny_config)


@pytest.mark.slow
def test_mx_training_diagnostics_and_switching_precision_by_branching(tiny_config, tmp_path):
    """MXFP8 tracks float32 and logs its diagnostics; a branch of the float32 run at step 10
    with MX on continues from exactly that state, data order and schedule: its step-11 loss
    is the MX loss of the parent's step-10 checkpoint on the step-10 batch, recomputed here."""
    from lm.model import ModelConfig
    from lm.train import batches, runtime, sharding
    from lm.train.checkpoint import Checkpointer

    tiny_config.train.update(dict(steps=20, eval_every=10, checkpoint_every=10, log_every=1))
    train.run(tiny_config, str(tmp_path / "f32"))
    mxfp8 = tiny_config.copy_and_resolve_references()
    mxfp8.precision.update(dict(mx_weights="mxfp8_e4m3", mx_activations="mxfp8_e4m3"))
    train.run(mxfp8, str(tmp_path / "mx"))
    f32, quantized = read_metrics(tmp_path / "f32"), read_metrics(tmp_path / "mx")
    assert quantized[-1]["train/loss"] == pytest.approx(f32[-1]["train/loss"], rel=0.03)
    assert quantized[-1]["train/loss"] != f32[-1]["train/loss"]
    assert 0 < quantized[-1]["mx/activations/clipped_blocks"] < 0.5
    assert "mx/weights/saturated" not in f32[-1] and f32[-1]["train/loss_spikes"] == 0

    branch = mxfp8.copy_and_resolve_references()
    branch.train.update(dict(branch_from=str(tmp_path / "f32"), branch_step=10))
    before = sorted(p.name for p in (tmp_path / "f32" / "checkpoints").iterdir())
    train.run(branch, str(tmp_path / "branch"))
    branched = read_metrics(tmp_path / "branch")
    assert branched[:10] == f32[:10]
    assert sorted(p.name for p in (tmp_path / "f32" / "checkpoints").iterdir()) == before

    data = batches.load(mxfp8)
    sharder = sharding.from_config(mxfp8)
    rt = runtime.build(ModelConfig.for_run(mxfp8, data.vocab_size),
                       runtime.build_optimizer(mxfp8).tx, sharder, seed=0,
                       seq_len=mxfp8.data.seq_len)
    parent = Checkpointer(str(tmp_path / "f32"), 1, read_only=True)
    state, _ = parent.restore(10, rt.abstract_state)
    _, metrics, _ = rt.train_step(state, batches.to_device(data.train_batch(10), sharder.batch))
    assert branched[10]["step"] == 11
    assert branched[10]["train/loss"] == float(metrics["train/loss"]) != f32[10]["train/loss"]
    with pytest.raises(ConfigError, match=r"has checkpoints at steps \[10, 20\]"):
        branch.train.branch_step = 7
        train.run(branch, str(tmp_path / "branch7"))


def test_presets_name_the_grid_and_the_interventions():
    from configs import mx as presets
    hybrid = presets.get_config("e4m3/bf16")
    assert (hybrid.precision.mx_weights, hybrid.precision.mx_activations) == (
        "mxfp8_e4m3", "bfloat16")
    f = mx.formats_from_config(hybrid.precision)["mx"]
    assert (f.w_bp, f.a_bp, f.g_ex, f.g_os) == ("mxfp8_e4m3", "bfloat16", "bfloat16", "bfloat16")
    grid = presets.get_config("fp6_e2m3/fp8_e5m2/fwd_only/bump_exp/half_away").precision
    assert (grid.mx_weights, grid.mx_activations, grid.mx_quantize_backprop, grid.mx_scale_rule,
            grid.mx_rounding) == ("mxfp6_e2m3", "mxfp8_e5m2", False, "bump_on_overflow",
                                  "half_away")
    assert presets.get_config("e4m3/e4m3/no_ln_affine").precision.norm_affine == "none"
    assert presets.get_config("e4m3/e4m3/ln_bf16").precision.norm_affine == "bfloat16"
    with pytest.raises(ValueError, match="unknown MX preset format 'fp16'"):
        presets.get_config("fp16/bf16")
    with pytest.raises(ValueError, match="unknown MX preset option 'fast'"):
        presets.get_config("e4m3/e4m3/fast")
