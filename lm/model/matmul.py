"""The one entry point for every matrix multiply in the model.

Dense layers, attention scores, attention-weighted values and the output logits all call
`einsum` here, so a change of matmul arithmetic (for example the MX-quantized matmuls of a later
issue) is made in this one place. Operands are cast to the activation dtype; accumulation is in
float32 (`preferred_element_type`), as on bf16 tensor cores and TPU MXUs.
"""
import jax.numpy as jnp

from lm.model import mx as mx_lib

# The weight-times-activation einsums of the model, as x (..., k) @ w (k, n): how to lay out the
# kernel for lm.model.mx.mx_matmul (the tied LM head stores the vocabulary first).
_KERNEL_LAYOUT = {"btd,dn->btn": False, "btn,nd->btd": False, "btd,df->btf": False,
                  "btf,fd->btd": False, "btd,dv->btv": False, "btd,vd->btv": True}


def einsum(spec: str, lhs, rhs, *, dtype, mx: mx_lib.MatmulFormats | None = None,
           probe=None, out_dtype=None) -> jnp.ndarray:
    """`jnp.einsum(spec, lhs, rhs)`: operands in `dtype`, float32 accumulation, out in
    `out_dtype` (default `dtype`; the logits keep float32).

    With `mx` (a weight matmul only), the MX-quantized matmul of lm/model/mx.py: both operands
    quantized along the reduction axis (from the `dtype`-rounded values), float32 out; its
    quantization counts are the gradient of `probe` (see lm.model.layers.mx_probe)."""
    lhs, rhs = lhs.astype(dtype), rhs.astype(dtype)
    if mx is not None:
        if spec not in _KERNEL_LAYOUT:
            raise ValueError(f"MX quantization is defined for weight matmuls "
                             f"{sorted(_KERNEL_LAYOUT)}, not {spec!r}")
        out = mx_lib.mx_matmul(lhs, rhs.T if _KERNEL_LAYOUT[spec] else rhs, mx,
                                probe=probe)
    else:
        out = jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32)
    return out.astype(out_dtype or dtype)
