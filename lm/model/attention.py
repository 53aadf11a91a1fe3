"""Causal attention of queries (batch, T, heads, head_dim) on keys and values (batch, T,
kv_heads, head_dim), with grouped-query heads native and no materialized mask.

    model.attention   what runs it
    einsum            the reference: two einsums and a float32 softmax over the full
                      (batch, heads, T, T) scores; O(T^2) memory
    xla               jax.nn.dot_product_attention(implementation="xla")
    cudnn             cuDNN's fused flash attention (jax.nn.dot_product_attention, GPU only,
                      bf16 / fp16 inputs)
    splash            the Pallas splash-attention kernel (TPU only), inside a shard_map over the
                      mesh axes of the batch and head dims
    auto              cudnn on GPU, splash on TPU, einsum elsewhere (on CPU the einsum is
                      XLA's fastest form: benchmarks/train_step.py --attention compares them)

Scores take their inputs in the compute dtype and accumulate in float32
(`preferred_element_type`), as tensor cores and MXUs do; the softmax is float32.

Decoding with a KV cache (`attend_cached`, lm/sample.py) always runs the einsum form: its
queries are a few new positions against the whole cache, which is memory-bound, not FLOP-bound.
"""
import jax
import jax.numpy as jnp
import numpy as np

from lm.model.settings import ATTENTIONS as IMPLEMENTATIONS

_BY_BACKEND = {"gpu": "cudnn", "tpu": "splash"}


def resolve(name: str, backend: str | None = None) -> str:
    """The implementation `name` means on `backend` (default: JAX's default backend)."""
    if name != "auto":
        return name
    return _BY_BACKEND.get(backend or jax.default_backend(), "einsum")


def attend(q, k, v, *, implementation: str, scale: float, dtype):
    """Causal attention; returns (batch, T, heads, head_dim) in `dtype`. "auto" resolves for
    JAX's default backend (ModelConfig.for_run resolves it for the run's devices)."""
    implementation = resolve(implementation)
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    if implementation == "einsum":
        seq = q.shape[1]
        return _einsum(q, k, v, scale, dtype, jnp.tril(jnp.ones((seq, seq), dtype=bool)))
    if implementation in ("xla", "cudnn"):
        return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True,
                                            implementation=implementation)
    if implementation == "splash":
        return _splash(q, k, v, scale)
    raise ValueError(f"model.attention={implementation!r} is not one of {IMPLEMENTATIONS}")


def attend_cached(q, k_cache, v_cache, position, *, scale: float, dtype):
    """Queries at positions position, position + 1, ... (batch, T, heads, head_dim) against a
    KV cache (batch, S, kv_heads, head_dim) whose first position + T entries are filled: each
    query sees the cache up to its own position. Returns (batch, T, heads, head_dim)."""
    seen = (position + jnp.arange(q.shape[1]))[:, None] >= jnp.arange(k_cache.shape[1])[None, :]
    q, k_cache, v_cache = (x.astype(dtype) for x in (q, k_cache, v_cache))
    return _einsum(q, k_cache, v_cache, scale, dtype, seen)


def _einsum(q, k, v, scale, dtype, mask):
    """The reference: scores (b, kv_heads, [groups,] T, S) as one einsum, keys where `mask`
    (T, S) is False left out. Grouped-query heads get a group axis (each query head's group
    against its kv head); with one query head per kv head the scores stay 4-D, which XLA's CPU
    backend runs faster than the same contraction with a size-1 group axis."""
    batch, seq, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    if heads == kv_heads:
        query_axes, score_axes = "btkh", "bkts"
    else:
        q = q.reshape(batch, seq, kv_heads, heads // kv_heads, head_dim)
        query_axes, score_axes = "btkgh", "bkgts"
    scores = jnp.einsum(f"{query_axes},bskh->{score_axes}", q, k,
                        preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(jnp.where(mask, scores * scale, jnp.finfo(jnp.float32).min))
    out = jnp.einsum(f"{score_axes},bskh->{query_axes}", probs.astype(dtype), v,
                     preferred_element_type=jnp.float32)
    return out.reshape(batch, seq, heads, head_dim).astype(dtype)


def _splash(q, k, v, scale):
    """Splash attention per device: a shard_map over the mesh axes that the logical rules give
    the batch and head dims (the kernel is a custom call that GSPMD cannot partition), vmapped
    over the batch and, for grouped-query heads, over the kv heads (the MQA kernel per group)."""
    import flax.linen as nn
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as masks,
    )

    batch, seq, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    groups = heads // kv_heads
    spec = jax.sharding.PartitionSpec(*nn.logical_to_mesh_axes(("batch", None, "kv_heads", None)))
    mesh = jax.sharding.get_abstract_mesh()
    shards = {name: size for name, size in mesh.shape.items()} if not mesh.empty else {}
    local_kv = kv_heads // int(np.prod([shards.get(a, 1) for a in _axes(spec[2])]))

    def per_device(q, k, v):
        mask = masks.MultiHeadMask([masks.CausalMask((seq, seq))] * groups)
        kernel = splash.make_splash_mqa_single_device(mask)
        local_batch = q.shape[0]
        q = (q * scale).reshape(local_batch, seq, local_kv, groups, head_dim)
        q = q.transpose(0, 2, 3, 1, 4)              # (b, kv, groups, T, d)
        k, v = (x.transpose(0, 2, 1, 3) for x in (k, v))  # (b, kv, T, d)
        out = jax.vmap(jax.vmap(kernel))(q, k, v)  # (b, kv, groups, T, d)
        return out.transpose(0, 3, 1, 2, 4).reshape(local_batch, seq, local_kv * groups,
                                                    head_dim)

    if mesh.empty:
        return per_device(q, k, v)
    return jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                         check_vma=False)(q, k, v)


def _axes(entry) -> tuple:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)

