"""The one entry point for every matrix multiply in the model.

Dense layers, attention scores, attention-weighted values and the output logits all call
`einsum` here, so a change of matmul arithmetic (for example the MX-quantized matmuls of a later
issue) is made in this one place. Operands are cast to the activation dtype; accumulation is in
float32 (`preferred_element_type`), as on bf16 tensor cores and TPU MXUs.

On CPU a weight matmul takes the activations as one (tokens, k) matrix (`flat`, which
ModelConfig.for_run resolves with `flattens_tokens`): as a 3-D einsum its weight gradient
contracts two axes (batch and sequence), and XLA's CPU backend computes that with a transposed
copy of the (tokens, n) gradient, fused into the elementwise op that makes it (the GELU
backward: 22% of a d256_l4 step); as a 2-D matmul it is a plain GEMM, and the whole train step
runs about 1.4x faster (benchmarks/nanodo.py). On TPU the 3-D form stays: XLA's cost model
estimates the 1B v5p:2x2x2 step 6% slower flattened. The product is the same either way.
"""
import jax.numpy as jnp

from lm.model import mx as mx_lib

# The weight-times-activation einsums of the model, as x (..., k) @ w (k, n): how to lay out the
# kernel for lm.model.mx.mx_matmul (the tied LM head stores the vocabulary first).
_KERNEL_LAYOUT = {"btd,dn->btn": False, "btn,nd->btd": False, "btd,df->btf": False,
                  "btf,fd->btd": False, "btd,dv->btv": False, "btd,vd->btv": True}


def flattens_tokens(backend: str) -> bool:
    """Whether weight matmuls on `backend` take the activations as one (tokens, k) matrix."""
    return backend == "cpu"


def einsum(spec: str, lhs, rhs, *, dtype, mx: mx_lib.MatmulFormats | None = None,
           probe=None, out_dtype=None, flat: bool = False) -> jnp.ndarray:
    """`jnp.einsum(spec, lhs, rhs)`: operands in `dtype`, float32 accumulation, out in
    `out_dtype` (default `dtype`; the logits keep float32). With `flat`, a weight matmul
    multiplies the activations as one (tokens, k) matrix (see the module's docstring).

    With `mx` (a weight matmul only), the MX-quantized matmul of lm/model/mx.py: both operands
    quantized along the reduction axis (from the `dtype`-rounded values), float32 out; its
    quantization counts are the gradient of `probe` (see lm.model.layers.mx_probe)."""
    lhs, rhs = lhs.astype(dtype), rhs.astype(dtype)
    if spec in _KERNEL_LAYOUT:
        kernel = rhs.T if _KERNEL_LAYOUT[spec] else rhs
        if mx is not None:
            out = mx_lib.mx_matmul(lhs, kernel, mx, probe=probe)
        elif flat:
            out = _tokens_matmul(lhs, kernel)
        else:
            out = jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32)
    elif mx is not None:
        raise ValueError(f"MX quantization is defined for weight matmuls "
                         f"{sorted(_KERNEL_LAYOUT)}, not {spec!r}")
    else:
        out = jnp.einsum(spec, lhs, rhs, preferred_element_type=jnp.float32)
    return out.astype(out_dtype or dtype)


def _tokens_matmul(x, kernel):
    """x (..., k) @ kernel (k, n) -> (..., n) float32, as one (tokens, k) @ (k, n) matmul."""
    out = jnp.dot(x.reshape(-1, x.shape[-1]), kernel, preferred_element_type=jnp.float32)
    return out.reshape(*x.shape[:-1], kernel.shape[-1])
