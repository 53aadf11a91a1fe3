"""MX matmuls (lm/mx.py): forward and the three re-quantized backward GEMMs, the model's entry
point and config, and a short MXFP8 training run against float32."""
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from lm import mx, train
from lm.config_checks import ConfigError, check_config
from lm.metrics_log import read_metrics

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


def test_forward_quantizes_both_operands_along_the_reduction_axis():
    x, w, _ = operands()
    y = mx.mx_matmul(x, w, "mxfp8_e4m3")
    expected = hi(mx.quantize(x, "mxfp8_e4m3", -1), mx.quantize(w, "mxfp8_e4m3", 0),
                  "btk,kn->btn")
    np.testing.assert_array_equal(y, expected)
    assert 0 < float(jnp.max(jnp.abs(y - x @ w))) < 0.1 * float(jnp.max(jnp.abs(x @ w)))


def test_backward_requantizes_each_gemm_along_its_own_reduction_axis():
    x, w, g = operands()
    f = DISTINCT.resolved()
    y, dx, dw = vjp(x, w, g, f)
    np.testing.assert_array_equal(
        dx, hi(mx.quantize(g, f.g_os, -1), mx.quantize(w, f.w_bp, -1), "btn,kn->btk"))
    np.testing.assert_array_equal(
        dw, hi(mx.quantize(x, f.a_bp, -2), mx.quantize(g, f.g_ex, -2), "btk,btn->kn"))


def test_backward_gemms_see_quantized_operands(monkeypatch):
    """Intercepts the quantizer: the backward pass quantizes g twice (for dx along the outputs,
    for dW along the tokens), w along its output axis and x along the tokens."""
    x, w, g = operands(shape=(2, 36, 40), n=44)
    _, pullback = jax.vjp(lambda x, w: mx.mx_matmul(x, w, DISTINCT), x, w)
    calls = []
    real = mx.quantize

    def recording(arr, fmt, axis, *args, **kwargs):
        calls.append((tuple(arr.shape), fmt, axis))
        return real(arr, fmt, axis, *args, **kwargs)

    monkeypatch.setattr(mx, "quantize", recording)
    pullback(g)
    assert sorted(calls) == sorted([((2, 36, 44), "mxfp4_e2m1", -1), ((40, 44), "mxfp6_e3m2", -1),
                                    ((2, 36, 40), "mxfp6_e2m3", -2),
                                    ((2, 36, 44), "mxint8", -2)])


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


@pytest.mark.slow
def test_mxfp8_training_tracks_float32_and_precision_can_change_on_resume(tiny_config,
                                                                          tmp_path):
    tiny_config.train.update(dict(steps=30, eval_every=15, checkpoint_every=15, log_every=5))
    train.run(tiny_config, str(tmp_path / "f32"))
    mxfp8 = tiny_config.copy_and_resolve_references()
    mxfp8.precision.update(dict(mx_weights="mxfp8_e4m3", mx_activations="mxfp8_e4m3"))
    train.run(mxfp8, str(tmp_path / "mx"))
    f32, quantized = read_metrics(tmp_path / "f32"), read_metrics(tmp_path / "mx")
    assert quantized[-1]["train/loss"] == pytest.approx(f32[-1]["train/loss"], rel=0.03)
    assert quantized[-1]["train/loss"] != f32[-1]["train/loss"]
    # switching precision mid-run: resume the float32 run's step-15 checkpoint as MXFP8
    shutil.copytree(tmp_path / "f32", tmp_path / "switch")
    shutil.rmtree(tmp_path / "switch" / "checkpoints" / "30")
    train.run(mxfp8, str(tmp_path / "switch"))
    switched = read_metrics(tmp_path / "switch")
    assert [r["train/loss"] for r in switched[:3]] == [r["train/loss"] for r in f32[:3]]
    assert switched[-1]["train/loss"] != f32[-1]["train/loss"]


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
    with pytest.raises(ValueError, match="unknown MX preset format 'fp16'"):
        presets.get_config("fp16/bf16")
    with pytest.raises(ValueError, match="unknown MX preset option 'fast'"):
        presets.get_config("e4m3/e4m3/fast")
