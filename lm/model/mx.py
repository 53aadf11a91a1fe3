"""OCP Microscaling (MX v1.0) quantize-dequantize and MX matmuls, emulated bit-exactly in float32.

Rouhani et al. 2023, "Microscaling Data Formats for Deep Learning" (arXiv:2310.10537, Alg. 1)
and the OCP MX v1.0 spec (§5, §6.3); conventions of microsoft/microxcaling where the spec is
silent; the worked spec of this project is ../shared/research/mx-spec.md.

A block of `block_size` (32) consecutive elements along one axis shares an E8M0 scale
X = 2^(floor(log2 amax) - emax_elem); each element is rounded to the element format's grid
(subnormals included) and saturated to +-max_normal; the dequantized value P * X is exact in
float32. Every exponent is read from the float32 bits and every power of two applied as a
multiplication by factors built from exponent bits: XLA's log2 is inexact at powers of two and
its exp2 at integers (mx-spec.md §3), and float32 subnormals are flushed on CPU, so 2^-127 is
never formed as one number (scale_by_pow2).
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lm.model.settings import MX_BACKENDS as BACKENDS
from lm.model.settings import MX_LAYERS
from lm.model.settings import MX_ROUNDINGS as ROUNDINGS
from lm.model.settings import MX_SCALE_RULES as SCALE_RULES


class ElementFormat(NamedTuple):
    """An MX element format: mantissa bits, exponents of the largest and smallest normal, and
    the largest magnitude (OCP MX v1.0 §5.3; FP8 per OFP8). MXINT8 has no exponent field:
    two's complement with an implicit 2^-6, clamped symmetrically to +-127/64."""
    mbits: int
    emax: int
    emin: int
    max_normal: float
    is_int: bool = False


FORMATS = {
    "mxfp8_e4m3": ElementFormat(3, 8, -6, 448.0),
    "mxfp8_e5m2": ElementFormat(2, 15, -14, 57344.0),
    "mxfp6_e3m2": ElementFormat(2, 4, -2, 28.0),
    "mxfp6_e2m3": ElementFormat(3, 2, 0, 7.5),
    "mxfp4_e2m1": ElementFormat(1, 2, 0, 6.0),
    "mxint8": ElementFormat(6, 0, 0, 127 / 64, is_int=True),
}
# Element formats with an XLA dtype that jax.lax.scaled_dot takes (float6 does not run on XLA
# CPU and MXINT8 has none; mx-spec.md §6).
NATIVE_DTYPES = {"mxfp8_e4m3": jnp.float8_e4m3fn, "mxfp8_e5m2": jnp.float8_e5m2,
                 "mxfp4_e2m1": jnp.float4_e2m1fn}
E8M0_MIN, E8M0_MAX = -127, 127


def floor_log2(x: jax.Array) -> jax.Array:
    """floor(log2 |x|) of float32 x from its exponent bits (exact for normal x; -127 for zero,
    which XLA's flush of subnormals makes of them too)."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    return ((bits >> 23) & 0xFF) - 127


def pow2(k: jax.Array) -> jax.Array:
    """2^k as float32 for integer k in [-126, 127], built from the exponent bits (exact)."""
    return jax.lax.bitcast_convert_type((k.astype(jnp.int32) + 127) << 23, jnp.float32)


def scale_by_pow2(x: jax.Array, k: jax.Array) -> jax.Array:
    """x * 2^k for integer k in [-252, 252], exact unless the result is subnormal: two
    normal factors, so that 2^-127 is never formed (ldexp's exactness, without its cost)."""
    half = k // 2
    return x * pow2(half) * pow2(k - half)


def round_to_integer(y: jax.Array, rounding: str) -> jax.Array:
    """Round float32 y to an integer: ties to even (OCP) or away from zero (microxcaling's
    default, what Su et al. ran). The fraction y - trunc(y) is exact, so ties are decided
    exactly (floor(|y| + 0.5) would round 0.5 - 2^-25 up)."""
    if rounding == "even":
        return jnp.round(y)
    whole = jnp.trunc(y)
    return whole + jnp.where(jnp.abs(y - whole) >= 0.5, jnp.sign(y), 0.0)


def _check(fmt: str, rounding: str, scale_rule: str, block_size: int) -> ElementFormat:
    if fmt not in FORMATS:
        raise ValueError(f"unknown MX format {fmt!r}; the formats are {', '.join(FORMATS)}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding={rounding!r} is not one of {ROUNDINGS}")
    if scale_rule not in SCALE_RULES:
        raise ValueError(f"scale_rule={scale_rule!r} is not one of {SCALE_RULES}")
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    return FORMATS[fmt]


def shared_exponents(amax: jax.Array, elem: ElementFormat, scale_rule: str) -> jax.Array:
    """The E8M0 exponent of blocks with maxima amax: floor(log2 amax) - emax_elem (OCP), plus 1
    under "bump_on_overflow" when the block maximum would otherwise clip (Su et al.'s
    intervention; NVIDIA's round-up rule 2^ceil(log2(amax / max_normal)))."""
    e = floor_log2(amax)
    if scale_rule == "bump_on_overflow":
        mantissa = scale_by_pow2(amax, -e)  # in [1, 2) for normal amax
        e = e + (mantissa > elem.max_normal / 2.0 ** elem.emax).astype(jnp.int32)
    return jnp.clip(e - elem.emax, E8M0_MIN, E8M0_MAX)


def round_elements(v: jax.Array, elem: ElementFormat, rounding: str) -> jax.Array:
    """v (already divided by the block scale) on the element grid, saturated to +-max_normal.

    Arithmetic on the exponent bits, not casts to float8_e4m3fn / float8_e5m2 / float4_e2m1fn:
    after a clip those casts give the same bits (checked), but on XLA CPU they run 2.5x slower,
    and the float6 dtypes do not run there at all."""
    if elem.is_int:
        q = round_to_integer(v * 2.0 ** elem.mbits, rounding) * 2.0 ** -elem.mbits
    else:
        ulp_exp = jnp.maximum(floor_log2(v), elem.emin) - elem.mbits
        q = round_to_integer(v * pow2(-ulp_exp), rounding) * pow2(ulp_exp)
    return jnp.clip(q, -elem.max_normal, elem.max_normal)


def _blocks(x: jax.Array, axis: int, block_size: int):
    """x with `axis` last, zero-padded and split into (..., blocks, block_size)."""
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    pad = -n % block_size
    if pad:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    return x.reshape(x.shape[:-1] + ((n + pad) // block_size, block_size)), n


def _block_quantize(x, elem: ElementFormat, axis: int, block_size: int, rounding: str,
                    scale_rule: str):
    """The blocks of x along `axis` (..., blocks, block_size), their maxima, E8M0 exponents,
    the elements divided by the scale and those rounded to the element grid."""
    blocks, n = _blocks(jnp.asarray(x, jnp.float32), axis % jnp.ndim(x), block_size)
    amax = jnp.max(jnp.abs(blocks), axis=-1, keepdims=True)  # NaN propagates
    scale_exp = shared_exponents(amax, elem, scale_rule)
    scaled = scale_by_pow2(blocks, -scale_exp)
    return blocks, n, amax, scale_exp, scaled, round_elements(scaled, elem, rounding)


def _unblock(blocks, n: int, axis: int, ndim: int):
    out = blocks.reshape(blocks.shape[:-2] + (-1,))[..., :n]
    return jnp.moveaxis(out, -1, axis % ndim)


# Counts kept per quantized operand (float32 sums: fractions stay exact to ~1e-7 at any size).
STATS = ("saturated", "clipped_blocks", "underflow", "elements", "blocks", "nonzero")


def _counts(elem: ElementFormat, size: int, blocks, amax, scale_exp, scaled, q) -> jax.Array:
    """The STATS of one quantized tensor of `size` elements, from _block_quantize's pieces."""
    nonzero = blocks != 0
    counts = [jnp.abs(scaled) > elem.max_normal,
              scale_by_pow2(amax, -scale_exp) > elem.max_normal,
              nonzero & (q == 0)]
    return jnp.stack([jnp.sum(c, dtype=jnp.float32) for c in counts]
                     + [jnp.float32(size), jnp.float32(amax.size),
                        jnp.sum(nonzero, dtype=jnp.float32)])


def quantize_with_stats(x, fmt: str, axis: int, block_size: int = 32, rounding: str = "even",
                        scale_rule: str = "floor") -> tuple[jax.Array, jax.Array]:
    """`quantize` and the counts of STATS: elements whose |x| / scale exceeds max_normal
    (saturated to it), blocks whose maximum does (Su et al.'s "clipped" blocks), nonzero
    elements that round to zero (underflow), and the numbers of elements, blocks and nonzero
    elements they are fractions of (mx-spec.md §7.3)."""
    elem = _check(fmt, rounding, scale_rule, block_size)
    x = jnp.asarray(x, jnp.float32)
    pieces = _block_quantize(x, elem, axis, block_size, rounding, scale_rule)
    blocks, n, amax, scale_exp, scaled, q = pieces
    out = jnp.where(jnp.isfinite(amax), scale_by_pow2(q, scale_exp), jnp.nan)
    return _unblock(out, n, axis, x.ndim), _counts(elem, x.size, blocks, *pieces[2:])


def quantize(x, fmt: str, axis: int, block_size: int = 32, rounding: str = "even",
             scale_rule: str = "floor") -> jax.Array:
    """OCP MX quantize-dequantize of x along `axis`: a float32 array of x's shape.

    Blocks of `block_size` consecutive elements along `axis` (a ragged last block is a shorter
    block) share the scale 2^shared_exponents(amax); a block holding NaN or Inf dequantizes
    to NaN (the E8M0 NaN scale, as microxcaling makes it).
    """
    return quantize_with_stats(x, fmt, axis, block_size, rounding, scale_rule)[0]


class MatmulFormats(NamedTuple):
    """Element formats of the operands of an MX matmul y = x @ w and of its backward GEMMs
    (microxcaling's mx_specs; None = that operand is not quantized):
      w     weights, forward (w_elem_format)       a     activations, forward (a_elem_format)
      w_bp  weights in dx = g w^T (w_elem_format_bp)
      a_bp  stashed activations in dW = x^T g (a_elem_format_bp)
      g_ex  output gradient in dW (a_elem_format_bp_ex)
      g_os  output gradient in dx (a_elem_format_bp_os)
    Unset backward formats default as microxcaling's finalize_mx_specs does: w_bp = w and
    a_bp = g_ex = g_os = a (gradients in the activation format). quantize_backprop=False runs
    the backward GEMMs on the unquantized operands ("quantize forward only").
    backend="scaled_dot" hands every GEMM whose two operands have a native element dtype
    (NATIVE_DTYPES) to `jax.lax.scaled_dot` as elements plus E8M0 scales (see _native_gemm)."""
    w: str | None = None
    a: str | None = None
    w_bp: str | None = None
    a_bp: str | None = None
    g_ex: str | None = None
    g_os: str | None = None
    block_size: int = 32
    rounding: str = "even"
    scale_rule: str = "floor"
    quantize_backprop: bool = True
    backend: str = "emulated"

    def resolved(self) -> "MatmulFormats":
        """The formats with microxcaling's defaults filled in (and checked)."""
        filled = self._replace(w_bp=self.w_bp or self.w, a_bp=self.a_bp or self.a,
                               g_ex=self.g_ex or self.a, g_os=self.g_os or self.a)
        if filled.backend not in BACKENDS:
            raise ValueError(f"MX backend {filled.backend!r} is not one of {BACKENDS}")
        for name in ("w", "a", "w_bp", "a_bp", "g_ex", "g_os"):
            fmt = getattr(filled, name)
            if fmt is not None and fmt != "bfloat16":
                _check(fmt, filled.rounding, filled.scale_rule, filled.block_size)
        return filled


def round_to_bfloat16(x: jax.Array, rounding: str) -> jax.Array:
    """x rounded to bfloat16's 8 significant bits, as float32: the cast (ties to even), or
    ties away from zero on the same grid (microxcaling's `bfloat=16` with its default round)."""
    x = jnp.asarray(x, jnp.float32)
    if rounding == "even":
        return x.astype(jnp.bfloat16).astype(jnp.float32)
    ulp_exp = floor_log2(x) - 7
    return scale_by_pow2(round_to_integer(scale_by_pow2(x, -ulp_exp), rounding), ulp_exp)


def _q(x, fmt, axis, formats: MatmulFormats) -> tuple[jax.Array, jax.Array]:
    """(x quantized to `fmt` along `axis`, its STATS counts). "bfloat16" rounds x to bf16 (an
    operand kept in bf16, as Su et al.'s "bf16 activations") and None leaves it float32; both
    count nothing."""
    if fmt is None or fmt == "bfloat16":
        x = x.astype(jnp.float32)
        return (x if fmt is None else round_to_bfloat16(x, formats.rounding),
                jnp.zeros(len(STATS), jnp.float32))
    return quantize_with_stats(x, fmt, axis, formats.block_size, formats.rounding,
                               formats.scale_rule)


def _dot(a, b, spec):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32,
                      precision=jax.lax.Precision.HIGHEST)


# The operands of an MX matmul and its backward GEMMs, in MatmulFormats' field order; a
# probe (OPERANDS x STATS zeros) given to mx_matmul receives their counts as its gradient.
OPERANDS = ("w", "a", "w_bp", "a_bp", "g_ex", "g_os")
PROBE_SHAPE = (len(OPERANDS), len(STATS))


def _native_operand(x, fmt: str, formats: MatmulFormats):
    """x (rows, ..., K) blocked along its last axis, as `scaled_dot` operands: elements in
    fmt's dtype (rows, K') and E8M0 scales (rows, K' / block_size), the middle axes folded into
    the reduction (a ragged block is zero-padded); and its STATS. The element values and
    scales are exactly the emulation's (a NaN/Inf block gets the E8M0 NaN scale)."""
    elem = FORMATS[fmt]
    pieces = _block_quantize(x, elem, -1, formats.block_size, formats.rounding,
                             formats.scale_rule)
    blocks, _, amax, scale_exp, _, q = pieces
    biased = jnp.where(jnp.isfinite(amax), scale_exp + 127, 255).astype(jnp.uint8)
    rows = x.shape[0]
    return (q.reshape(rows, -1).astype(NATIVE_DTYPES[fmt]),
            jax.lax.bitcast_convert_type(biased, jnp.float8_e8m0fnu).reshape(rows, -1),
            _counts(elem, x.size, blocks, *pieces[2:]))


def _native_gemm(a, fa: str, b, fb: str, formats: MatmulFormats):
    """(a @ b^T (rows_a, rows_b) by jax.lax.scaled_dot on MX operands, a's STATS, b's STATS)
    for a (rows_a, ..., K) and b (rows_b, ..., K), both blocked along K. On an accelerator with
    MX tensor cores the products and scales are the emulation's; only the float32 accumulation
    order is the kernel's. On CPU XLA decomposes it (dequantize, then dot)."""
    ea, sa, ca = _native_operand(a, fa, formats)
    eb, sb, cb = _native_operand(b, fb, formats)
    out = jax.lax.scaled_dot(ea, eb, lhs_scale=sa, rhs_scale=sb,
                             dimension_numbers=(((1,), (1,)), ((), ())),
                             preferred_element_type=jnp.float32)
    return out, ca, cb


def _is_native(fa, fb, formats: MatmulFormats) -> bool:
    return formats.backend == "scaled_dot" and fa in NATIVE_DTYPES and fb in NATIVE_DTYPES


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _mx_matmul(x, w, probe, formats):
    return _forward(x, w, probe, formats)[0]  # XLA drops the unused counts


def _forward(x, w, probe, formats):
    del probe
    if _is_native(formats.a, formats.w, formats):
        y, a_stats, w_stats = _native_gemm(x.reshape(-1, x.shape[-1]), formats.a, w.T,
                                           formats.w, formats)
        y = y.reshape(x.shape[:-1] + (w.shape[1],))
    else:
        (xq, a_stats), (wq, w_stats) = (_q(x, formats.a, -1, formats),
                                        _q(w, formats.w, 0, formats))
        y = _dot(xq, wq, "...k,kn->...n")
    return y, (x, w, w_stats, a_stats)


def _backward(formats, residuals, g):
    """Each backward GEMM re-quantizes its operands, from the saved high-precision x and w,
    along its own reduction axis: dx = Q(g, -1) Q(w, -1)^T reduces over the outputs;
    dW = Q(x, -2)^T Q(g, -2) reduces over tokens, blocked within each sequence. The probe's
    "gradient" is the operands' STATS counts (zero rows for unquantized operands)."""
    x, w, w_stats, a_stats = residuals
    if not formats.quantize_backprop:
        formats = MatmulFormats(block_size=formats.block_size)
    g = g.astype(jnp.float32)
    if _is_native(formats.g_os, formats.w_bp, formats):
        dx, g_os_stats, w_bp_stats = _native_gemm(g.reshape(-1, g.shape[-1]), formats.g_os, w,
                                                  formats.w_bp, formats)
        dx = dx.reshape(x.shape)
    else:
        (g_os, g_os_stats), (w_bp, w_bp_stats) = (_q(g, formats.g_os, -1, formats),
                                                  _q(w, formats.w_bp, -1, formats))
        dx = _dot(g_os, w_bp, "...n,kn->...k")
    xs, gs = x.reshape((-1,) + x.shape[-2:]), g.reshape((-1,) + g.shape[-2:])
    if _is_native(formats.a_bp, formats.g_ex, formats):
        dw, a_bp_stats, g_ex_stats = _native_gemm(xs.transpose(2, 0, 1), formats.a_bp,
                                                  gs.transpose(2, 0, 1), formats.g_ex, formats)
    else:
        (a_bp, a_bp_stats), (g_ex, g_ex_stats) = (_q(xs, formats.a_bp, -2, formats),
                                                  _q(gs, formats.g_ex, -2, formats))
        dw = _dot(a_bp, g_ex, "btk,btn->kn")
    counts = jnp.stack([w_stats, a_stats, w_bp_stats, a_bp_stats, g_ex_stats, g_os_stats])
    return dx.astype(x.dtype), dw.astype(w.dtype), counts


_mx_matmul.defvjp(_forward, _backward)


def mx_matmul(x, w, fmt: "str | MatmulFormats", block_size: int = 32,
              probe: jax.Array | None = None) -> jax.Array:
    """Q(x, axis=-1) @ Q(w, axis=0) in float32 for x (..., k) with at least one leading axis
    and w (k, n). `fmt` is one format for every operand, or a MatmulFormats. The gradient is
    straight-through the quantizers, with the backward GEMMs re-quantized (see _backward).
    The gradient with respect to `probe` (zeros of PROBE_SHAPE) is the quantization counts of
    every operand (`diagnostics` turns them into fractions); without one they are not computed
    (XLA drops them)."""
    formats = (MatmulFormats(w=fmt, a=fmt, block_size=block_size) if isinstance(fmt, str)
               else fmt).resolved()
    return _mx_matmul(x, w, jnp.zeros(PROBE_SHAPE, jnp.float32) if probe is None else probe,
                      formats)


_OPERAND_FIELDS = {"w": "mx_weights", "a": "mx_activations", "w_bp": "mx_weights_bp",
                   "a_bp": "mx_activations_bp", "g_ex": "mx_grads_for_weights",
                   "g_os": "mx_grads_for_inputs"}


def diagnostics(formats: MatmulFormats, counts: jax.Array) -> dict:
    """{"mx/<kind>/saturated" | "clipped_blocks" | "underflow": fraction} for each MX-quantized
    operand kind, from counts (OPERANDS x STATS) summed over layers and microbatches: saturated
    elements per element, clipped blocks per block, zeroed per nonzero element."""
    out = {}
    for i, operand in enumerate(OPERANDS):
        quantized = formats.quantize_backprop or operand in ("w", "a")
        if getattr(formats, operand) not in FORMATS or not quantized:
            continue
        c = dict(zip(STATS, counts[i]))
        kind = "mx/" + _OPERAND_FIELDS[operand].removeprefix("mx_")
        out[f"{kind}/saturated"] = c["saturated"] / c["elements"]
        out[f"{kind}/clipped_blocks"] = c["clipped_blocks"] / c["blocks"]
        out[f"{kind}/underflow"] = c["underflow"] / jnp.maximum(c["nonzero"], 1.0)
    return out


def formats_from_config(precision_cfg) -> dict:
    """{"mx": MatmulFormats or None, "mx_layers": tuple} from config.precision ("" = not
    quantized); raises ValueError naming a bad field."""
    operands = {k: precision_cfg[field] or None for k, field in _OPERAND_FIELDS.items()}
    for k, fmt in operands.items():
        if fmt is not None and fmt not in (*FORMATS, "bfloat16"):
            raise ValueError(f"precision.{_OPERAND_FIELDS[k]}={fmt!r} is not an MX format; use "
                             f"one of {', '.join(FORMATS)}, bfloat16, or '' (not quantized)")
    layers = tuple(precision_cfg.mx_layers)
    unknown = [layer for layer in layers if layer not in MX_LAYERS]
    if unknown:
        raise ValueError(f"precision.mx_layers has {unknown}; the quantizable layers are "
                         f"{MX_LAYERS} (attention scores and embeddings stay unquantized)")
    if not any(operands.values()):
        return {"mx": None, "mx_layers": ()}
    formats = MatmulFormats(**operands, block_size=precision_cfg.mx_block_size,
                            rounding=precision_cfg.mx_rounding,
                            scale_rule=precision_cfg.mx_scale_rule,
                            quantize_backprop=precision_cfg.mx_quantize_backprop,
                            backend=precision_cfg.mx_backend)
    return {"mx": formats.resolved(), "mx_layers": layers}
