"""MX quantize-dequantize, part 2: multi-block rows (NaN/Inf, zero and ragged blocks, other
block sizes), the axes of matrices and 3-D arrays, and bit-exact randomized comparisons with
the float64 reference of mx_reference.py (test_mx_quantize.py has the hand-worked blocks)."""
import functools

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from lm.model import mx
from tests.model.mx_reference import (
    COMBOS,
    E2M1,
    E3M2,
    E4M3,
    E5M2,
    FORMATS,
    INT8,
    MIN_NORMAL32,
    MIN_SUB,
    MODES,
    ROUNDINGS,
    RULES,
    SPEC,
    assert_same,
    first_difference,
    flush,
    quantize_all,
    ref_quantize,
)

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


def test_every_format_offered_quantizes_as_the_spec_says_and_others_are_refused():
    """Each format lm.model.mx offers (its own list: one added there without a spec entry in
    mx_reference.py fails here) quantizes a block holding the spec's largest normal, a value
    that must clamp to it, its smallest subnormal and values between exactly as the reference
    does; an unknown name is refused with the list."""
    for fmt in mx.FORMATS:
        assert fmt in SPEC, f"lm.model.mx offers {fmt!r}, which mx-spec.md §2 does not define"
        _, _, _, max_normal, _ = SPEC[fmt]
        x = np.array([1.1 * max_normal, max_normal, -max_normal, 0.3 * max_normal,  # X = 1
                      MIN_SUB[fmt], 3 * MIN_SUB[fmt], 0.7 * MIN_SUB[fmt], 0.0], np.float32)
        want = ref_quantize(x, fmt, -1)
        assert_same(np.asarray(mx.quantize(jnp.asarray(x), fmt, -1)), want, fmt)
    assert set(FORMATS) <= set(mx.FORMATS)  # the parametrized tests above ran on all of them
    with pytest.raises(ValueError, match=r"unknown MX format 'mxfp7_e3m3'; the formats are "
                                         r"mxfp8_e4m3, "):
        mx.quantize(jnp.asarray(x), "mxfp7_e3m3", -1)


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
    for name, outputs in (("multi", multi_outputs), ("random", random_outputs)):
        eager, jitted = outputs("eager"), outputs("jit")
        for c in COMBOS:
            np.testing.assert_array_equal(jitted[c], eager[c], err_msg=f"{name} {c}")
