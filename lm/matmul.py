"""The one entry point for every matrix multiply in the model.

Dense layers, attention scores, attention-weighted values and the output logits all call
`einsum` here, so a change of matmul arithmetic (for example the MX-quantized matmuls of a later
issue) is made in this one place. Operands are cast to the activation dtype; accumulation is in
float32 (`preferred_element_type`), as on bf16 tensor cores and TPU MXUs.
"""
import jax.numpy as jnp


def einsum(spec: str, lhs, rhs, *, dtype) -> jnp.ndarray:
    """`jnp.einsum(spec, lhs, rhs)`: operands in `dtype`, float32 accumulation, out in `dtype`."""
    out = jnp.einsum(spec, lhs.astype(dtype), rhs.astype(dtype),
                     preferred_element_type=jnp.float32)
    return out.astype(dtype)
