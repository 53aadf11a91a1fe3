"""MX quantize-dequantize (lm/model/mx.py `quantize`) against the OCP MX v1.0 rules of
shared/research/mx-spec.md §2-3, part 1: hand-worked blocks.

The file holds its own float64 NumPy reference of the normative pseudo-code (exponents from
np.frexp, powers of two from np.ldexp; nothing from lm.model.mx), checks that reference against a
brute force nearest-value search over every code of the element formats, and then holds the
implementation to hand-worked blocks for every format (grids, ties and their float32
neighbours under both roundings, element subnormals, saturation, E8M0 extremes, NaN/Inf, zero
and ragged blocks, axes, jit, bump_on_overflow) and to bit-exact randomized comparisons
(test_mx_quantize_blocks.py); the reference and the calls are in mx_reference.py.

float32 subnormal results are implementation-defined (XLA CPU flushes them, mx-spec.md §3), so
every exact expectation here keeps nonzero results >= 2^-126.
"""
import functools

import ml_dtypes
import numpy as np
import pytest

from tests.model.mx_reference import (
    COMBOS,
    E2M1,
    E2M3,
    E3M2,
    E4M3,
    E5M2,
    FLOAT_FORMATS,
    FLT_MAX,
    FORMATS,
    INT8,
    MIN_NORMAL32,
    MIN_SUB,
    ML_DTYPE,
    MODES,
    ROUNDINGS,
    RULES,
    SPEC,
    assert_same,
    down,
    first_difference,
    p2,
    quantize_all,
    ref_quantize,
    ref_round_elements,
    up,
)

# --------------------------------------------------------------------------------------------
# Hand-worked blocks. Each case: (name, fmt, x, expectations); an expectation key is one of
# "all", "floor", "bump", "even", "away" or "<rule>_<rounding>" (most specific wins). Cases are
# zero-padded to one block of 32, so the zeros' outputs are checked too.

RULE_KEY = {"floor": "floor", "bump_on_overflow": "bump"}
ROUND_KEY = {"even": "even", "half_away": "away"}


def case(name, fmt, x, **expected):
    """A hand case; its inputs and outputs must be float32 normals or zero (XLA CPU flushes
    subnormals), which is checked here, as the cases are written."""
    for values in [x, *expected.values()]:
        v = np.array([float(u) for u in values])
        if not (np.array_equal(v.astype(np.float32).astype(np.float64), v)
                and np.all((v == 0) | (np.abs(v) >= MIN_NORMAL32))):
            raise ValueError(f"hand case {name!r}: {values} are not all float32 normals or 0")
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


def test_jit_equals_eager_on_the_hand_worked_blocks():
    eager, jitted = block_outputs("eager"), block_outputs("jit")
    for c in COMBOS:
        np.testing.assert_array_equal(jitted[c], eager[c], err_msg=f"blocks {c}")
