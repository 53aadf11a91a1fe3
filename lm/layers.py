"""Building blocks of the decoder: dense projections, norms and rotary position embedding.

Parameters carry logical axis names (`nn.with_logical_partitioning`) so that the sharding rules
of `mesh` map them onto devices; on one device the names are inert.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import matmul


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
    mx: Any = None  # lm.mx.MatmulFormats of this layer, or None (not quantized)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", normal_init(self.init_std, self.kernel_axes),
                            tuple(self.kernel_shape), jnp.float32)
        return matmul.einsum(self.spec, x, kernel, dtype=self.dtype, mx=self.mx)


class Norm(nn.Module):
    """Pre-norm: RMSNorm (Zhang & Sennrich 2019; scale only) or LayerNorm (Ba et al. 2016; scale
    and bias). Computed in float32 whatever the activation dtype, returned in `dtype`."""
    kind: str  # "rmsnorm" | "layernorm"
    dtype: jnp.dtype
    eps: float = 1e-6
    axis_name: str = "norm"

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        x32 = x.astype(jnp.float32)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                                 (self.axis_name,)),
                           (dim,), jnp.float32)
        if self.kind == "rmsnorm":
            y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
            return (y * scale).astype(self.dtype)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                               (self.axis_name,)),
                          (dim,), jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * scale + bias).astype(self.dtype)


def rotary_table(max_len: int, head_dim: int, base: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos/sin tables (max_len, head_dim // 2) for RoPE (Su et al. 2021, RoFormer eq. 34)."""
    inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.arange(max_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x, cos, sin):
    """Rotates pairs (x[..., :h/2], x[..., h/2:]) of x (batch, seq, heads, head_dim) by position.

    Uses the half-split pairing of GPT-NeoX/LLaMA; cos/sin are (seq, head_dim // 2).
    """
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)
