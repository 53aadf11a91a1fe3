"""Building blocks of the decoder: dense projections, norms and rotary position embedding.

Parameters carry logical axis names (`nn.with_logical_partitioning`) so that the sharding rules
of `mesh` map them onto devices; on one device the names are inert.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.model import matmul
from lm.model import mx as mx_lib

MX_STATS = "mx_stats"  # the collection of MX diagnostics probes (see mx_probe)


def normal_init(stddev: float, axes: Sequence[str]):
    """N(0, stddev^2) initializer tagged with logical axis names."""
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), tuple(axes))


class DenseGeneral(nn.Module):
    """x @ W for a kernel of shape (*in_shape, *out_shape), via the single matmul entry point.

    `spec` is the einsum that contracts the input with the kernel, e.g. "btd,dhk->bthk".
    """
    spec: str
    kernel_shape: Sequence[int]
    kernel_axes: Sequence[str]
    init_std: float
    dtype: jnp.dtype
    mx: Any = None  # lm.model.mx.MatmulFormats of this layer, or None (not quantized)
    out_dtype: Any = None  # default: dtype
    flat: bool = False  # x as one (tokens, k) matrix (lm/model/matmul.py)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", normal_init(self.init_std, self.kernel_axes),
                            tuple(self.kernel_shape), jnp.float32)
        kernel = cast_sharded(kernel, self.dtype, self.kernel_axes)
        return matmul.einsum(self.spec, x, kernel, dtype=self.dtype, mx=self.mx,
                             probe=mx_probe(self, self.mx), out_dtype=self.out_dtype,
                             flat=self.flat)


def cast_sharded(weight, dtype, axes):
    """`weight` in the compute dtype, cast where it lives: constrained to its own logical axes,
    so that under FSDP the cast runs on each shard and the all-gather before the matmul moves
    bf16, half the bytes of the float32 master (a no-op for float32)."""
    if jnp.dtype(dtype) == weight.dtype:
        return weight
    return nn.with_logical_constraint(weight.astype(dtype), tuple(axes))


def mx_probe(module: nn.Module, mx) -> jax.Array | None:
    """The MX diagnostics probe of a quantized matmul in `module`: zeros (lm.model.mx.PROBE_SHAPE)
    in the "mx_stats" collection, whose gradient is that matmul's quantization counts (the
    train step reads them). None when the layer is not quantized or the model is applied
    without the collection (evaluation)."""
    if mx is None or not (module.is_initializing() or module.has_variable(MX_STATS, "probe")):
        return None
    return module.variable(MX_STATS, "probe", jnp.zeros, mx_lib.PROBE_SHAPE, jnp.float32).value


class Norm(nn.Module):
    """Pre-norm: RMSNorm (Zhang & Sennrich 2019; scale only) or LayerNorm (Ba et al. 2016; scale
    and bias). Computed in float32 whatever the activation dtype, returned in `dtype`.

    `affine` is the handling of the scale and bias that Su et al. (2025) trace MX instabilities
    to: "float32"; "bfloat16", rounded to bf16 in the forward with a straight-through
    gradient, as microxcaling's LayerNorm does (`rounding` as its MX rounding); or "none", no
    affine parameters (their *_no_LN_affine configs)."""
    kind: str  # "rmsnorm" | "layernorm"
    dtype: jnp.dtype
    eps: float = 1e-6
    axis_name: str = "norm"
    affine: str = "float32"
    rounding: str = "even"

    def _affine_param(self, name: str, init, dim: int):
        value = self.param(name, nn.with_logical_partitioning(init, (self.axis_name,)), (dim,),
                           jnp.float32)
        if self.affine == "bfloat16":  # x + (bf16(x) - x) is exactly bf16(x) (Sterbenz)
            value = value + jax.lax.stop_gradient(
                mx_lib.round_to_bfloat16(value, self.rounding) - value)
        return value

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        x32 = x.astype(jnp.float32)
        if self.kind == "rmsnorm":
            y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        else:
            mean = jnp.mean(x32, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
            y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine != "none":
            y = y * self._affine_param("scale", nn.initializers.ones, dim)
            if self.kind == "layernorm":
                y = y + self._affine_param("bias", nn.initializers.zeros, dim)
        return y.astype(self.dtype)


def rotary_table(max_len: int, head_dim: int, base: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos/sin tables (max_len, head_dim // 2) for RoPE (Su et al. 2021, RoFormer eq. 34)."""
    inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.arange(max_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x, cos, sin):
    """Rotates pairs (x[..., :h/2], x[..., h/2:]) of x (batch, seq, heads, head_dim) by position.

    Uses the half-split pairing of GPT-NeoX/LLaMA; cos/sin are (seq, head_dim // 2). (A form
    without the concatenation, x * [cos; cos] + swap(x) * [-sin; sin], computes the same values
    but fuses differently in the full train step, which moves the gradients' last bits.)
    """
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
