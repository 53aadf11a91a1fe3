"""MX quantize-dequantize (lm/mx.py `quantize`) against the OCP MX v1.0 rules of
shared/research/mx-spec.md §2-3.

The file holds its own float64 NumPy reference of the normative pseudo-code (exponents from
np.frexp, powers of two from np.ldexp; nothing from lm.mx), checks that reference against a brute
force nearest-value search over every code of the element formats, and then holds the
implementation to hand-worked blocks for every format (grids, ties and their float32
neighbours under both roundings, element subnormals, saturation, E8M0 extremes, NaN/Inf, zero
and ragged blocks, axes, jit, bump_on_overflow) and to bit-exact randomized comparisons.

float32 subnormal results are implementation-defined (XLA CPU flushes them, mx-spec.md §3), so
every exact expectation here keeps nonzero results >= 2^-126.
"""
import functools
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from lm import mx

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
    """{(fmt, rounding, scale_rule): lm.mx.quantize(float32 x, ...) as NumPy}; checks dtype
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


# --------------------------------------------------------------------------------------------
# Hand-worked blocks. Each case: (name, fmt, x, expectations); an expectation key is one of
# "all", "floor", "bump", "even", "away" or "<rule>_<rounding>" (most specific wins). Cases are
# zero-padded to one block of 32, so the zeros' outputs are checked too.

RULE_KEY = {"floor": "floor", "bump_on_overflow": "bump"}
ROUND_KEY = {"even": "even", "half_away": "away"}


def case(name, fmt, x, **expected):
    return name, fmt, [float(v) for v in x], {k: [float(v) for v in e]
                                              for k, e in expected.items()}


def expected_for(expected, scale_rule, rounding):
    r, q = RULE_KEY[scale_rule], ROUND_KEY[rounding]
    for key in (f"{r}_{q}", r, q, "all"):
        if key in expected:
            return expected[key]
    return None  # no defined expectation (e.g. a bump that would overflow float32)


def on_grid(name, fmt, x):
    return case(name, fmt, x, all=x)


E4M3, E5M2, E3M2, E2M3, E2M1, INT8 = FORMATS
BELOW_8 = down(8.0)  # 7.9999995, mx-spec.md §2

CASES = [
    # ---- E4M3 (X = 1 when amax = 448)
    on_grid("e4m3 grid", E4M3, [448, -448, 240, 1.125, p2(-6), p2(-9), 7 * p2(-9), -0.875]),
    # spec example: X = 2^-6, v = 511.99997 clamps to 448 -> 7.0; bump: X = 2^-5 -> 8.0.
    # 2^-16 / 2^-6 = 2^-10 is half the E4M3 subnormal step 2^-9: a tie.
    case("e4m3 amax 7.9999995", E4M3, [BELOW_8, 1.0, p2(-7), p2(-16), -3.0],
         floor_even=[7.0, 1.0, p2(-7), 0.0, -3.0],
         floor_away=[7.0, 1.0, p2(-7), p2(-15), -3.0],
         bump=[8.0, 1.0, p2(-7), 0.0, -3.0]),
    # 464 is the midpoint above 448 (a native e4m3fn cast gives NaN there)
    case("e4m3 saturation", E4M3, [480, 464, -480, 1.0],
         floor=[448, 448, -448, 1.0],
         bump_even=[480, 448, -480, 1.0], bump_away=[480, 480, -480, 1.0]),
    case("e4m3 element subnormals", E4M3,
         [448, p2(-9), 3 * p2(-10), 5 * p2(-10), p2(-10), 3 * p2(-12), -5 * p2(-10)],
         even=[448, p2(-9), p2(-8), p2(-8), 0, 0, -p2(-8)],
         away=[448, p2(-9), p2(-8), 3 * p2(-9), p2(-9), 0, -3 * p2(-9)]),
    # ---- E5M2 (X = 1 when amax = 57344)
    on_grid("e5m2 grid", E5M2, [57344, -57344, 49152, 1.25, p2(-14), p2(-16), 3 * p2(-16)]),
    case("e5m2 saturation", E5M2, [61440, 3.0, -61440],
         floor=[57344, 3.0, -57344], bump=[65536, 3.0, -65536]),
    case("e5m2 element subnormals", E5M2,
         [57344, p2(-17), 3 * p2(-17), 5 * p2(-17), p2(-18)],
         even=[57344, 0, p2(-15), p2(-15), 0],
         away=[57344, p2(-16), p2(-15), 3 * p2(-16), 0]),
    # ---- E3M2 (X = 1 when amax = 28)
    on_grid("e3m2 grid", E3M2, [28, -28, 24, 14, 1.75, 0.25, 0.0625, 0.1875]),
    case("e3m2 saturation", E3M2, [30, -29, 1.0], floor=[28, -28, 1.0], bump=[32, -28, 1.0]),
    case("e3m2 element subnormals", E3M2, [28, 0.03125, 0.09375, 0.15625, -0.15625],
         even=[28, 0, 0.125, 0.125, -0.125], away=[28, 0.0625, 0.125, 0.1875, -0.1875]),
    # ---- E2M3 (X = 1 when amax = 7.5)
    on_grid("e2m3 grid", E2M3, [7.5, -7.5, 5.5, 3.25, 1.125, 1.0, 0.875, 0.125]),
    case("e2m3 saturation", E2M3, [7.75, 7.5, 0.5], floor=[7.5, 7.5, 0.5], bump=[8, 7.5, 0.5]),
    case("e2m3 element subnormals", E2M3, [7.5, 0.0625, 0.1875, 0.3125, 0.03125],
         even=[7.5, 0, 0.25, 0.25, 0], away=[7.5, 0.125, 0.25, 0.375, 0]),
    # ---- E2M1: values {0, 0.5, 1, 1.5, 2, 3, 4, 6}
    on_grid("e2m1 grid", E2M1, [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.5, -1, -1.5, -2, -3, -4, -6]),
    case("e2m1 saturation", E2M1, [7, 6, 1, 0.5],
         floor=[6, 6, 1, 0.5], bump_even=[8, 6, 1, 0], bump_away=[8, 6, 1, 1]),
    case("e2m1 every tie", E2M1, [6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -5, 0.125],
         even=[6, 0, 1, 1, 2, 2, 4, 4, -4, 0], away=[6, 0.5, 1, 1.5, 2, 3, 4, 6, -6, 0]),
    # ---- MXINT8: k/64, |k| <= 127
    on_grid("int8 grid", INT8, [127 / 64, -127 / 64, 1, 33 / 64, 1 / 64, -1 / 64]),
    case("int8 saturation", INT8, [127.5 / 64, -1, 1 / 64, -127.75 / 64],
         floor=[127 / 64, -1, 1 / 64, -127 / 64],  # symmetric: never -128/64
         bump_even=[2, -1, 0, -2], bump_away=[2, -1, 1 / 32, -2]),
    case("int8 ties", INT8, [127 / 64, 0.5 / 64, 2.5 / 64, -2.5 / 64, 3.5 / 64, 126.5 / 64],
         even=[127 / 64, 0, 2 / 64, -2 / 64, 4 / 64, 126 / 64],
         away=[127 / 64, 1 / 64, 3 / 64, -3 / 64, 4 / 64, 127 / 64]),
    case("int8 scale 2", INT8, [3, 3 / 64, 5 / 64],
         even=[3, 1 / 16, 1 / 16], away=[3, 1 / 16, 3 / 32]),
    # ---- E8M0 top: amax = FLT_MAX. X = 2^(127 - emax_elem); the max clamps. (Under bump the
    # block max would round to 2^128 for the float formats, so only floor is pinned there.)
    case("e4m3 amax FLT_MAX", E4M3, [FLT_MAX, -1.5 * p2(126), p2(120)],
         floor=[1.75 * p2(127), -1.5 * p2(126), p2(120)]),
    case("e5m2 amax FLT_MAX", E5M2, [FLT_MAX, -1.5 * p2(126), p2(120)],
         floor=[1.75 * p2(127), -1.5 * p2(126), p2(120)]),
    case("e3m2 amax FLT_MAX", E3M2, [FLT_MAX, -1.5 * p2(126), p2(120)],
         floor=[1.75 * p2(127), -1.5 * p2(126), p2(120)]),
    case("e2m3 amax FLT_MAX", E2M3, [FLT_MAX, -1.5 * p2(126), p2(120)],
         floor=[1.875 * p2(127), -1.5 * p2(126), 0]),
    case("e2m1 amax FLT_MAX", E2M1, [FLT_MAX, -1.5 * p2(126), p2(120)],
         floor=[1.5 * p2(127), -1.5 * p2(126), 0]),
    # INT8 needs X = 2^127 (2^-127 as one float32 is flushed); bump's 2^128 clamps to 2^127.
    case("int8 amax FLT_MAX", INT8, [FLT_MAX, -1.5 * p2(126), p2(120)],
         even=[127 / 64 * p2(127), -1.5 * p2(126), 0],
         away=[127 / 64 * p2(127), -1.5 * p2(126), p2(121)]),
    # bump at the top: X = 2^120, v = 232 is an E4M3 tie
    case("e4m3 amax 1.8125*2^127", E4M3, [1.8125 * p2(127), p2(120)],
         floor=[1.75 * p2(127), p2(120)],
         bump_even=[1.75 * p2(127), p2(120)], bump_away=[1.875 * p2(127), p2(120)]),
    # ---- E8M0 bottom: shared_exp = floor(log2 amax) - emax clamps to -127.
    case("e4m3 amax 1.375*2^-120", E4M3,
         [p2(-120), 1.375 * p2(-120), 1.0625 * p2(-120), p2(-125)],
         even=[p2(-120), 1.375 * p2(-120), p2(-120), p2(-125)],
         away=[p2(-120), 1.375 * p2(-120), 1.125 * p2(-120), p2(-125)]),
    case("e3m2 amax 1.4375*2^-124", E3M2, [p2(-124), 1.25 * p2(-124), 1.4375 * p2(-124)],
         all=[p2(-124), 1.25 * p2(-124), 1.5 * p2(-124)]),
    case("int8 amax 2^-118", INT8, [p2(-118), -0.75 * p2(-118), p2(-124), 1.5 * p2(-125)],
         all=[p2(-118), -0.75 * p2(-118), p2(-124), p2(-124)]),
] + [
    # amax = 1.5 * 2^-126 (the smallest float32 normal binade): X = 2^-127 for all but INT8
    case(f"{f} amax 1.5*2^-126", f, [1.5 * p2(-126), -p2(-126), 1.25 * p2(-126)],
         all=[1.5 * p2(-126), -p2(-126), 1.25 * p2(-126)])
    for f in FORMATS if f != E2M1
] + [
    case("e2m1 amax 1.5*2^-126", E2M1, [1.5 * p2(-126), -p2(-126), 1.25 * p2(-126)],
         even=[1.5 * p2(-126), -p2(-126), p2(-126)],
         away=[1.5 * p2(-126), -p2(-126), 1.5 * p2(-126)]),
]


# --------------------------------------------------------------------------------------------
# Ties and the float32 values just beside them.

# (tie, grid value below, grid value above, the RNE choice), with X = 1 (amax = max_normal)
TIES = {
    E4M3: [(232, 224, 240, 224), (1.0625, 1, 1.125, 1), (1.1875, 1.125, 1.25, 1.25),
           (5 * p2(-10), p2(-8), 3 * p2(-9), p2(-8)), (p2(-10), 0, p2(-9), 0)],
    E5M2: [(36864, 32768, 40960, 32768), (45056, 40960, 49152, 49152), (1.125, 1, 1.25, 1),
           (5 * p2(-17), p2(-15), 3 * p2(-16), p2(-15)), (p2(-17), 0, p2(-16), 0)],
    E3M2: [(18, 16, 20, 16), (13, 12, 14, 12), (0.15625, 0.125, 0.1875, 0.125),
           (0.09375, 0.0625, 0.125, 0.125), (0.03125, 0, 0.0625, 0)],
    E2M3: [(5.25, 5, 5.5, 5), (3.125, 3, 3.25, 3), (0.3125, 0.25, 0.375, 0.25),
           (0.1875, 0.125, 0.25, 0.25), (0.0625, 0, 0.125, 0)],
    E2M1: [(0.25, 0, 0.5, 0), (0.75, 0.5, 1, 1), (1.25, 1, 1.5, 1), (1.75, 1.5, 2, 2),
           (2.5, 2, 3, 2), (3.5, 3, 4, 4), (5, 4, 6, 4)],
    INT8: [(0.5 / 64, 0, 1 / 64, 0), (2.5 / 64, 2 / 64, 3 / 64, 2 / 64),
           (3.5 / 64, 3 / 64, 4 / 64, 4 / 64), (126.5 / 64, 126 / 64, 127 / 64, 126 / 64)],
}


# --------------------------------------------------------------------------------------------
# Single-block rows (one block of 32 along the last axis per row, zero-padded), all in one
# array: the hand cases, ties, max_normal 2^k, the bump threshold and zero blocks.

TIE_KS = (-60, 0, 45)
MAX_KS = (-126, -100, -37, -1, 0, 1, 13, 64, 100)  # plus 127 - emax_elem per format
BUMP_KS = (-100, -3, 0, 7, 60)


def _block_rows():
    rows = {}
    for i, (_, _, x, _) in enumerate(CASES):
        rows["case", i] = x
    for fmt in FORMATS:
        _, emax, _, max_normal, _ = SPEC[fmt]
        for k in TIE_KS:
            for j, (t, _, _, _) in enumerate(TIES[fmt]):
                t = t * p2(k)
                rows["tie", fmt, k, j] = [max_normal * p2(k), t, -t, up(t), down(t), -up(t),
                                          -down(t)]
        for k in MAX_KS + (127 - emax,):
            rows["max", fmt, k] = [max_normal * p2(k), -max_normal * p2(k), p2(k)]
        for k in BUMP_KS:
            top, small = max_normal * p2(k), MIN_SUB[fmt] * p2(k)
            rows["bump_at", fmt, k] = [top, small, -small]
            rows["bump_above", fmt, k] = [up(top), small, -small]
    rows["zero", "+0"] = [0.0] * 32
    rows["zero", "-0"] = [-0.0] * 32
    rows["zero", "one 2^-2"] = [0.0] * 31 + [0.25]
    rows["spec example"] = [BELOW_8] + [0.5] * 31
    return rows


BLOCK_ROWS = _block_rows()
BLOCK_INDEX = {key: i for i, key in enumerate(BLOCK_ROWS)}


@functools.cache
def block_inputs():
    x = np.zeros((len(BLOCK_ROWS), 32))
    for i, row in enumerate(BLOCK_ROWS.values()):
        assert len(row) <= 32
        x[i, :len(row)] = row
    assert np.array_equal(x.astype(np.float32).astype(np.float64), x)
    return x.astype(np.float32)


@functools.cache
def block_outputs(mode):
    return quantize_all(block_inputs(), -1, 32, mode)


def block_out(key, fmt, rounding="even", scale_rule="floor", mode="eager"):
    return block_outputs(mode)[fmt, rounding, scale_rule][BLOCK_INDEX[key]]


def test_hand_cases_are_float32_normals_or_zero():
    for name, _, x, expected in CASES:
        for values in [x, *expected.values()]:
            v = np.array(values)
            assert np.array_equal(v.astype(np.float32).astype(np.float64), v), name
            assert np.all((v == 0) | (np.abs(v) >= MIN_NORMAL32)), name


def _padded(values):
    return np.array(list(values) + [0.0] * (32 - len(values)))


@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_reference_reproduces_hand_cases(fmt, rounding, scale_rule):
    for name, f, x, expected in CASES:
        want = expected_for(expected, scale_rule, rounding)
        if f == fmt and want is not None:
            got = ref_quantize(_padded(x), fmt, -1, rounding=rounding, scale_rule=scale_rule)
            assert_same(got, _padded(want), f"reference, {name}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_hand_cases(fmt, rounding, scale_rule, mode):
    failures = []
    for i, (name, f, x, expected) in enumerate(CASES):
        want = expected_for(expected, scale_rule, rounding)
        if f != fmt or want is None:
            continue
        got = block_out(("case", i), fmt, rounding, scale_rule, mode)
        if not np.array_equal(got, _padded(want).astype(np.float32)):
            tail = "" if not got[len(x):].any() else " (padding not zero)"
            failures.append(f"{name}:\n  x    {x}\n  want {want}\n"
                            f"  got  {got[:len(x)].tolist()}{tail}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mode", MODES)
def test_spec_example_e4m3_7_9999995_gives_7(mode):
    assert block_out("spec example", E4M3, mode=mode)[0] == 7.0
    assert block_out("spec example", E4M3, scale_rule="bump_on_overflow", mode=mode)[0] == 8.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_ties_and_their_float32_neighbours(fmt, mode):
    """Row per tie t (block scaled by 2^k): [max_normal, t, -t, t+, t-, -t+, -t-] where t+/t-
    are one float32 ulp above/below the tie. Ties go to the even value or away from zero;
    the neighbours go to the nearer grid value under both roundings, and the two roundings
    differ exactly on the ties whose even choice is the lower value."""
    any_differ = False
    for k in TIE_KS:
        s = p2(k)
        for j, (t, lo, hi, even) in enumerate(TIES[fmt]):
            key = ("tie", fmt, k, j)
            x = np.array(BLOCK_ROWS[key])
            neighbours = [hi * s, lo * s, -hi * s, -lo * s]
            want = {"even": [x[0], even * s, -even * s] + neighbours,
                    "half_away": [x[0], hi * s, -hi * s] + neighbours}
            got = {}
            for rounding in ROUNDINGS:
                got[rounding] = block_out(key, fmt, rounding, mode=mode)
                msg = f"{fmt} tie {t} * 2^{k}, rounding={rounding}: x={x.tolist()}"
                assert_same(got[rounding], _padded(want[rounding]), msg)
                assert_same(ref_quantize(_padded(x), fmt, -1, rounding=rounding),
                            _padded(want[rounding]), "reference: " + msg)
            differs = got["even"] != got["half_away"]
            should = _padded(want["even"]) != _padded(want["half_away"])
            np.testing.assert_array_equal(differs, should)
            any_differ |= should.any()
    assert any_differ


@pytest.mark.parametrize("fmt", FORMATS)
def test_max_normal_times_power_of_two_is_exact(fmt):
    """[max_normal 2^k, -max_normal 2^k, 2^k] is on the grid with X = 2^k, up to the top of
    float32 (k = 127 - emax_elem) and down to 2^-126; no bump (the mantissa is the max)."""
    for k in MAX_KS + (127 - SPEC[fmt][1],):
        x = _padded(BLOCK_ROWS["max", fmt, k])
        for rounding, scale_rule in [(r, s) for r in ROUNDINGS for s in RULES]:
            for mode in MODES:
                got = block_out(("max", fmt, k), fmt, rounding, scale_rule, mode)
                assert_same(got, x, f"{fmt} k={k} {rounding} {scale_rule} {mode}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_bump_on_overflow_only_when_the_block_max_would_clip(fmt, mode):
    """amax = max_normal 2^k: no bump, same as floor. amax one float32 ulp above: floor clips
    it to max_normal 2^k; bump doubles X, so the max is no longer clipped and the smallest
    element step (min_sub 2^k, exact under floor) becomes a tie at the doubled scale."""
    max_normal, is_int = SPEC[fmt][3], SPEC[fmt][4]
    for k in BUMP_KS:
        top, small = max_normal * p2(k), MIN_SUB[fmt] * p2(k)
        bumped_top = p2(k + 1) if is_int else top  # 127/64 / 2 is not on the INT8 grid
        for rounding in ROUNDINGS:
            def out(which, rule, k=k, rounding=rounding):
                return block_out((which, fmt, k), fmt, rounding, rule, mode)
            tie = 0.0 if rounding == "even" else 2 * small
            msg = f"{fmt} k={k} {rounding}"
            assert_same(out("bump_at", "floor"), _padded([top, small, -small]), msg)
            assert_same(out("bump_at", "bump_on_overflow"), _padded([top, small, -small]), msg)
            assert_same(out("bump_above", "floor"), _padded([top, small, -small]), msg)
            assert_same(out("bump_above", "bump_on_overflow"),
                        _padded([bumped_top, tie, -tie]), msg)


@pytest.mark.parametrize("mode", MODES)
def test_zero_blocks(mode):
    for fmt, rounding, scale_rule in COMBOS:
        for key in [("zero", "+0"), ("zero", "-0"), ("zero", "one 2^-2")]:
            got = block_out(key, fmt, rounding, scale_rule, mode)
            assert_same(got, BLOCK_ROWS[key], f"{key} {fmt} {rounding} {scale_rule}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_all_single_block_rows_match_the_reference(fmt, rounding, scale_rule, mode):
    x = block_inputs()
    got = block_outputs(mode)[fmt, rounding, scale_rule]
    want = ref_quantize(x, fmt, -1, rounding=rounding, scale_rule=scale_rule)
    # float32 overflow: a bumped scale at the top of the range (unspecified; see CASES)
    finite = np.isfinite(want).all(axis=1)
    assert finite.sum() > 0.9 * len(x)
    msg = first_difference(x[finite], got[finite], want[finite])
    assert not msg, msg


# --------------------------------------------------------------------------------------------
# The reference itself, against a brute-force nearest search over every element code.

def _element_codes(fmt):
    """All finite nonnegative values of the element format, in code order (ml_dtypes)."""
    if SPEC[fmt][4]:
        return np.arange(128) / 64.0
    bits = 8 if fmt.startswith("mxfp8") else (6 if fmt.startswith("mxfp6") else 4)
    vals = np.arange(2 ** (bits - 1), dtype=np.uint8).view(ML_DTYPE[fmt]).astype(np.float64)
    return vals[np.isfinite(vals)]


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_reference_rounding_matches_brute_force_over_all_codes(fmt, rounding):
    codes = _element_codes(fmt)
    assert np.all(np.diff(codes) > 0) and codes.max() == SPEC[fmt][3]
    mids = (codes[:-1] + codes[1:]) / 2
    rng = np.random.default_rng(1)
    beyond = codes.max() * np.array([1.01, 3, 1e6])
    v = np.concatenate([codes, mids, mids * (1 + 2.0 ** -20), mids * (1 - 2.0 ** -20), beyond,
                        rng.uniform(0, 1.3 * codes.max(), 3000), codes[1] * rng.uniform(0, 1, 200)])
    v = v.astype(np.float32).astype(np.float64)
    dist = np.abs(v[:, None] - codes[None, :])
    best = dist.min(axis=1, keepdims=True)
    tied = dist == best
    idx = np.arange(len(codes))
    assert tied.sum(axis=1).max() <= 2
    nearest = np.where(tied, idx, -1).max(axis=1)  # the larger magnitude among the nearest
    if rounding == "even":  # on a tie, the even code
        even = np.where(tied & (idx % 2 == 0), idx, -1).max(axis=1)
        nearest = np.where(tied.sum(axis=1) == 2, even, nearest)
    want = codes[nearest]
    for sign in (1, -1):
        got = ref_round_elements(sign * v, fmt, rounding)
        np.testing.assert_array_equal(got, sign * want)


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_reference_rounding_matches_ml_dtypes_casts(fmt):
    max_normal = SPEC[fmt][3]
    rng = np.random.default_rng(2)
    v = rng.standard_normal(4000) * np.ldexp(1.0, rng.integers(-20, 20, 4000)) * max_normal / 8
    v = v.astype(ml_dtypes.bfloat16).astype(np.float64)  # many ties
    want = np.clip(v, -max_normal, max_normal).astype(ML_DTYPE[fmt]).astype(np.float64)
    np.testing.assert_array_equal(ref_round_elements(v, fmt, "even"), want)


# --------------------------------------------------------------------------------------------
# Multi-block rows of 200 along the last axis: 6 blocks of 32 and a ragged block of 8.

CLEAN = [1.0, -0.5, 0.25, 0.125] + [0.0] * 28  # exact in every format (X = 2^-emax_elem)


def _multi_rows():
    clean = np.array(CLEAN)
    nan_b, inf_b, ninf_b, both_b = (clean.copy() for _ in range(4))
    nan_b[5] = np.nan
    inf_b[31] = np.inf
    ninf_b[0] = -np.inf
    both_b[1], both_b[2] = np.nan, np.inf
    tail = np.array([1.0, -0.5, 0.25, 0.0, 0.125, 0.0, 0.5, 1.0])
    tail_nan = tail.copy()
    tail_nan[3] = np.nan
    zero = np.zeros(32)
    # E2M1: blocks [0:160] are all 0.75; [160:192] holds a 6 (X = 1: 0.75 -> 1.0); the tail
    # [192:200] has amax 0.75 (X = 2^-3) and must not take the scale of any other block.
    ragged = np.full(200, 0.75)
    ragged[160] = 6.0
    ragged[192:] = [0.75, 0.375, 0.25, -0.1875, 0.0, 0.09375, 0.75, 0.5]
    rows = {
        "nan": np.concatenate([clean, nan_b, inf_b, ninf_b, both_b, clean, tail_nan]),
        "clean": np.concatenate([clean] * 6 + [tail]),
        "zeros": np.concatenate([zero, clean, -zero, zero, np.roll(clean, 7), -zero, tail * 0]),
        "ragged e2m1": ragged,
    }
    rng = np.random.default_rng(9)
    for i in range(8):
        z = rng.standard_normal(200) * np.exp(2 * rng.standard_normal())
        rows[f"random {i}"] = z.astype(ml_dtypes.bfloat16).astype(np.float64)  # with ties
    return rows


MULTI_ROWS = _multi_rows()
MULTI_INDEX = {key: i for i, key in enumerate(MULTI_ROWS)}
MULTI_X = np.stack(list(MULTI_ROWS.values())).astype(np.float32)


@functools.cache
def multi_outputs(mode):
    return quantize_all(MULTI_X, -1, 32, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_inf_zero_and_ragged_blocks(fmt, rounding, scale_rule, mode):
    """A NaN or +-Inf anywhere in a block makes that whole block NaN (the ragged tail
    included); the other blocks of the row are untouched; zero blocks give zeros."""
    got = multi_outputs(mode)[fmt, rounding, scale_rule]
    row = {key: got[i] for key, i in MULTI_INDEX.items()}
    nan_want = MULTI_ROWS["nan"].copy()
    nan_want[32:160] = np.nan
    nan_want[192:] = np.nan
    assert_same(row["nan"], nan_want, "NaN/Inf row")
    assert_same(row["clean"], MULTI_ROWS["clean"], "clean row")
    assert_same(row["zeros"], MULTI_ROWS["zeros"], "row with zero blocks")
    want = ref_quantize(MULTI_X, fmt, -1, rounding=rounding, scale_rule=scale_rule)
    msg = first_difference(MULTI_X, got, want)
    assert not msg, msg


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_ragged_last_block_has_its_own_scale(rounding, mode):
    want = MULTI_ROWS["ragged e2m1"].copy()
    want[161:192] = 1.0  # 0.75 at X = 1: the tie between 0.5 and 1 goes to 1 either way
    want[197] = 0.125  # 0.09375 / X = 0.75 at X = 2^-3: a tie, to 1 either way
    for scale_rule in RULES:
        got = multi_outputs(mode)[E2M1, rounding, scale_rule][MULTI_INDEX["ragged e2m1"]]
        assert_same(got, want, scale_rule)


@pytest.mark.parametrize("block_size", [1, 8, 64, 100, 200, 256])
def test_other_block_sizes(block_size):
    combos = ((E4M3, "even", "floor"), (E2M1, "half_away", "bump_on_overflow"),
              (INT8, "half_away", "floor"), (E3M2, "even", "bump_on_overflow"))
    got = quantize_all(MULTI_X, -1, block_size, "jit", combos)
    for fmt, rounding, scale_rule in combos:
        want = ref_quantize(MULTI_X, fmt, -1, block_size, rounding, scale_rule)
        msg = first_difference(MULTI_X, got[fmt, rounding, scale_rule], want)
        assert not msg, f"{fmt} {rounding} {scale_rule}: {msg}"


def test_default_arguments_and_input_dtypes():
    want = ref_quantize(MULTI_X, E4M3, -1)
    assert_same(np.asarray(mx.quantize(jnp.asarray(MULTI_X), E4M3, -1)), want)
    assert_same(np.asarray(mx.quantize(MULTI_X, E4M3, -1)), want)  # a NumPy array
    xb = jnp.asarray(MULTI_X, jnp.bfloat16)
    out = mx.quantize(xb, E5M2, -1)
    assert out.dtype == jnp.float32 and out.shape == MULTI_X.shape
    assert_same(np.asarray(out), ref_quantize(np.asarray(xb.astype(jnp.float32)), E5M2, -1))


def test_formats_listed():
    assert set(mx.FORMATS) == set(FORMATS)


# --------------------------------------------------------------------------------------------
# Axes.

@functools.cache
def matrix():
    """(96, 64): rows 0-31 are the E2M1 pattern (row 0 all 6, the rest 0.75), rows 32-95
    random with per-row and per-column scales."""
    rng = np.random.default_rng(10)
    x = np.full((96, 64), 0.75)
    x[0] = 6.0
    z = rng.standard_normal((64, 64)) * np.exp(rng.standard_normal((64, 1)))
    x[32:] = z * np.exp(rng.standard_normal((1, 64)))
    return x.astype(np.float32)


@functools.cache
def matrix_outputs(axis):
    return quantize_all(matrix(), axis)


def test_matrix_axes_block_rows_or_columns():
    """E2M1 pattern: blocked along rows (axis 1) every block is constant and nothing changes;
    along columns (axis 0) each column's first block holds a 6, so X = 1 and 0.75 -> 1.0."""
    x = matrix()
    by_cols = x[:32].copy()
    by_cols[1:] = 1.0
    for axis in (1, 0):
        assert_same(matrix_outputs(axis)[E2M1, "even", "floor"][:32],
                    x[:32] if axis == 1 else by_cols, f"axis={axis}")
    for axis, negative in ((1, -1), (0, -2)):
        q = mx.quantize(jnp.asarray(x), E2M1, negative)
        assert_same(np.asarray(q), matrix_outputs(axis)[E2M1, "even", "floor"])


@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_matrix_axes_match_the_reference(fmt, rounding, scale_rule):
    x = matrix()
    q0 = matrix_outputs(0)[fmt, rounding, scale_rule]
    q1 = matrix_outputs(1)[fmt, rounding, scale_rule]
    for axis, q in ((0, q0), (1, q1)):
        msg = first_difference(x, q, ref_quantize(x, fmt, axis, 32, rounding, scale_rule))
        assert not msg, f"axis={axis}: {msg}"
    if scale_rule == "floor":  # different block maxima clip: MX(W^T) != MX(W)^T
        assert not np.array_equal(q0, q1)
    assert_same(ref_quantize(x.T, fmt, 1, 32, rounding, scale_rule).T, q0)


@functools.cache
def cube():
    """(3, 70, 5); along axis 1: blocks [0:32], [32:64] and a ragged [64:70] per fiber."""
    rng = np.random.default_rng(11)
    y = rng.standard_normal((3, 70, 5)) * np.exp(3 * rng.standard_normal((3, 1, 5)))
    y[0] = 0.75
    y[0, 0, 2] = 6.0  # E2M1: only the block (0, 0:32, 2) gets X = 1
    return y.astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_middle_axis_of_a_3d_array(mode):
    y = cube()
    combos = tuple(COMBOS) if mode == "eager" else ((E2M1, "even", "floor"),
                                                    (E4M3, "half_away", "bump_on_overflow"))
    out = quantize_all(y, 1, 32, mode, combos)
    want = y[0].copy()
    want[1:32, 2] = 1.0
    assert_same(out[E2M1, "even", "floor"][0], want)
    for (fmt, rounding, scale_rule), got in out.items():
        ref = ref_quantize(y, fmt, 1, 32, rounding, scale_rule)
        msg = first_difference(y, got, ref)
        assert not msg, f"{fmt} {rounding} {scale_rule}: {msg}"
        for b in range(3):  # each fiber on its own
            for c in range(5):
                fiber = ref_quantize(y[b, :, c], fmt, 0, 32, rounding, scale_rule)
                assert_same(got[b, :, c], fiber)
    assert_same(np.asarray(mx.quantize(jnp.asarray(y), E2M1, -2)), out[E2M1, "even", "floor"])


# --------------------------------------------------------------------------------------------
# Randomized, bit-exact against the reference.

KS = (-80, -33, -7, 0, 5, 29, 64, 110)  # keeps every nonzero result >= 2^-126 and finite
EXTREME_KS = (-124, -121, -118, -110, 118, 124)  # clamped scales; some subnormal results


@functools.cache
def random_inputs():
    """(4 len(KS) + len(EXTREME_KS), 4, 120) float32: N(0,1) 2^k, the same rounded to bf16
    (frequent ties), cubed normals (wide range inside a block), sparse rows with repeated
    maxima, then N(0,1) 2^k at the ends of the E8M0 range (some block maxima pushed just
    below a power of two). The last axis has 3 full blocks and a ragged one of 24. Inputs
    below 2^-126 are zeroed (XLA CPU flushes them)."""
    rng = np.random.default_rng(7)
    scale = np.ldexp(1.0, np.array(KS))[:, None, None]
    z = rng.standard_normal((len(KS), 4, 120))
    normal = z * scale
    bf16 = normal.astype(ml_dtypes.bfloat16).astype(np.float64)
    heavy = z ** 3 * scale
    sparse = np.where(rng.uniform(size=z.shape) < 0.4, 0.0, normal)
    sparse[:, :, 5] = sparse[:, :, 9] = -np.max(np.abs(sparse[:, :, :32]), axis=-1)
    extreme = rng.standard_normal((len(EXTREME_KS), 4, 120))
    extreme *= np.ldexp(1.0, np.array(EXTREME_KS))[:, None, None]
    extreme[:, 1, 32:64] *= 1.9
    return flush(np.concatenate([normal, bf16, heavy, sparse, extreme]))


@functools.cache
def random_outputs(mode):
    return quantize_all(random_inputs(), -1, 32, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale_rule", RULES)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_random_matches_reference(fmt, rounding, scale_rule, mode):
    """Bit-exact. float32 subnormal results are implementation-defined (flushed on XLA CPU);
    they occur only in the extreme-scale rows, and there any |result| < 2^-126 is accepted."""
    x = random_inputs()
    got = random_outputs(mode)[fmt, rounding, scale_rule]
    want = ref_quantize(x, fmt, -1, rounding=rounding, scale_rule=scale_rule)
    assert np.all(np.isfinite(want))
    sub = (want != 0) & (np.abs(want) < MIN_NORMAL32)
    assert not sub[:4 * len(KS)].any()
    msg = first_difference(x[~sub], got[~sub], want[~sub])
    assert not msg, msg
    assert np.all(np.abs(got[sub]) < MIN_NORMAL32)


def test_bf16_inputs_make_the_roundings_differ():
    bf16_rows = slice(len(KS), 2 * len(KS))
    for fmt in FORMATS:
        even = random_outputs("eager")[fmt, "even", "floor"][bf16_rows]
        away = random_outputs("eager")[fmt, "half_away", "floor"][bf16_rows]
        assert (even != away).any(), fmt
        assert np.all(np.abs(away) >= np.abs(even)), fmt  # ties only ever go up in magnitude


def test_jit_equals_eager():
    for name, outputs in (("blocks", block_outputs), ("multi", multi_outputs),
                          ("random", random_outputs)):
        eager, jitted = outputs("eager"), outputs("jit")
        for c in COMBOS:
            np.testing.assert_array_equal(jitted[c], eager[c], err_msg=f"{name} {c}")
