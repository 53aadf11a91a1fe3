"""The shared material of the MX quantization tests (test_mx_quantize*.py): the formats of
shared/research/mx-spec.md §2, an independent float64 NumPy reference of its normative
pseudo-code (§3; exponents from np.frexp, powers of two from np.ldexp, nothing from
lm.model.mx), and the calls of the implementation in all (format, rounding, scale rule)
combinations, eager and jitted.
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from lm.model import mx

# name: (mantissa bits, emax_elem, emin, max_normal, is_int) -- mx-spec.md §2.
SPEC = {
    "mxfp8_e4m3": (3, 8, -6, 448.0, False),
    "mxfp8_e5m2": (2, 15, -14, 57344.0, False),
    "mxfp6_e3m2": (2, 4, -2, 28.0, False),
    "mxfp6_e2m3": (3, 2, 0, 7.5, False),
    "mxfp4_e2m1": (1, 2, 0, 6.0, False),
    "mxint8": (6, 0, 0, 127 / 64, True),
}
FORMATS = tuple(SPEC)
E4M3, E5M2, E3M2, E2M3, E2M1, INT8 = FORMATS
FLOAT_FORMATS = FORMATS[:-1]
ROUNDINGS = ("even", "half_away")
RULES = ("floor", "bump_on_overflow")
MODES = ("eager", "jit")
# The smallest positive element value (the element subnormal, or 1/64 for MXINT8).
MIN_SUB = {"mxfp8_e4m3": 2.0 ** -9, "mxfp8_e5m2": 2.0 ** -16, "mxfp6_e3m2": 2.0 ** -4,
           "mxfp6_e2m3": 2.0 ** -3, "mxfp4_e2m1": 2.0 ** -1, "mxint8": 2.0 ** -6}
ML_DTYPE = {"mxfp8_e4m3": ml_dtypes.float8_e4m3fn, "mxfp8_e5m2": ml_dtypes.float8_e5m2,
            "mxfp6_e3m2": ml_dtypes.float6_e3m2fn, "mxfp6_e2m3": ml_dtypes.float6_e2m3fn,
            "mxfp4_e2m1": ml_dtypes.float4_e2m1fn}
FLT_MAX = float(np.finfo(np.float32).max)
MIN_NORMAL32 = 2.0 ** -126


def p2(e):
    return math.ldexp(1.0, e)


def up(v):
    """The next float32 above v (toward +Inf)."""
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def down(v):
    """The next float32 toward zero from v."""
    return float(np.nextafter(np.float32(v), np.float32(0)))


# --------------------------------------------------------------------------------------------
# Independent float64 reference (mx-spec.md §3).

def _floor_log2(a):
    """floor(log2 a) for float64 a > 0, exactly (frexp: a = m 2^e with m in [0.5, 1))."""
    return np.frexp(a)[1].astype(np.int64) - 1


def _round_integer(y, rounding):
    """y (float64 with at most 24 significant bits) rounded to an integer; ties to even or
    away from zero. floor and the fraction are exact in float64."""
    if rounding == "even":
        return np.rint(y)
    a = np.abs(y)
    whole = np.floor(a)
    return np.sign(y) * (whole + (a - whole >= 0.5))


def ref_round_elements(v, fmt, rounding):
    """v = x / X rounded onto the element grid of fmt (subnormals included) and clamped to
    +-max_normal, in float64."""
    mbits, _, emin, max_normal, is_int = SPEC[fmt]
    v = np.asarray(v, np.float64)
    if is_int:
        q = _round_integer(v * 64.0, rounding) / 64.0
    else:
        a = np.abs(v)
        p = np.where(a > 0, _floor_log2(np.where(a > 0, a, 1.0)), emin)
        ulp_exp = np.maximum(p, emin) - mbits
        q = np.ldexp(_round_integer(np.ldexp(v, -ulp_exp), rounding), ulp_exp)
    return np.clip(q, -max_normal, max_normal)


def ref_quantize(x, fmt, axis, block_size=32, rounding="even", scale_rule="floor"):
    """MX quantize-dequantize of float32(x) along axis, computed in float64; returns float32."""
    _, emax, _, max_normal, _ = SPEC[fmt]
    x = np.moveaxis(np.asarray(x, np.float32).astype(np.float64), axis, -1)
    n = x.shape[-1]
    pad = -n % block_size
    x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], axis=-1)
    blocks = x.reshape(x.shape[:-1] + (-1, block_size))
    amax = np.max(np.abs(blocks), axis=-1, keepdims=True)  # NaN propagates
    special = ~np.isfinite(amax)
    positive = np.isfinite(amax) & (amax > 0)
    safe = np.where(positive, amax, 1.0)
    s = np.where(positive, _floor_log2(safe), -127) - emax
    if scale_rule == "bump_on_overflow":
        s = s + (np.ldexp(safe, -s) > max_normal)  # the block max would clip
    s = np.clip(s, -127, 127)
    v = np.ldexp(np.where(special, 0.0, blocks), -s)
    out = np.ldexp(ref_round_elements(v, fmt, rounding), s)
    out = np.where(special, np.nan, out)
    out = np.moveaxis(out.reshape(out.shape[:-2] + (-1,))[..., :n], -1, axis)
    with np.errstate(over="ignore"):  # 2^128 (a bump at the very top) is Inf in float32
        out32 = out.astype(np.float32)
    checked = np.isfinite(out32) & (np.abs(out) >= MIN_NORMAL32)
    assert np.array_equal(out32[checked].astype(np.float64), out[checked]), "not exact in f32"
    return out32


# --------------------------------------------------------------------------------------------
# Calling the implementation. XLA compiles per shape (eagerly op by op, or per jitted function),
# so the tests share a few input arrays and quantize each once in all 24 (format, rounding,
# scale rule) combinations, eager and jitted; the parametrized tests then read their part.

COMBOS = [(f, r, s) for f in FORMATS for r in ROUNDINGS for s in RULES]


def _all_combos(x, axis, block_size, combos):
    return {c: mx.quantize(x, c[0], axis, block_size=block_size, rounding=c[1],
                           scale_rule=c[2]) for c in combos}


@functools.cache
def _jitted(axis, block_size, combos):
    return jax.jit(lambda x: _all_combos(x, axis, block_size, combos))


def quantize_all(x, axis=-1, block_size=32, mode="eager", combos=tuple(COMBOS)):
    """{(fmt, rounding, scale_rule): lm.model.mx.quantize(float32 x, ...) as NumPy}; checks dtype
    and shape."""
    x = jnp.asarray(np.asarray(x, np.float32))
    if mode == "jit":
        out = _jitted(axis, block_size, combos)(x)
    else:
        out = _all_combos(x, axis, block_size, combos)
    for o in out.values():
        assert o.dtype == jnp.float32 and o.shape == x.shape
    return {c: np.asarray(o) for c, o in out.items()}


def assert_same(got, want, msg=""):
    """Bit-exact up to the sign of zero; NaN == NaN."""
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want, np.float32), err_msg=msg)


def flush(x):
    """float32 x with subnormals set to zero (XLA CPU does the same to its inputs)."""
    x = np.asarray(x, np.float32)
    return np.where(np.abs(x) < MIN_NORMAL32, np.float32(0), x)


def first_difference(x, got, want):
    bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    if not bad.any():
        return ""
    i = tuple(int(j) for j in np.argwhere(bad)[0])
    return (f"{bad.sum()} of {bad.size} differ; first at {i}: x={float(x[i])!r} "
            f"want={float(want[i])!r} got={float(got[i])!r}")
