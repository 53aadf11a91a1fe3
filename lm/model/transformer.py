"""Decoder-only transformer LM in Flax linen: pure `init` / `apply`.

    model = Transformer(ModelConfig.from_config(config.model, vocab_size, dtype))
    params = model.init(rng, tokens)["params"]
    logits = model.apply({"params": params}, tokens)

Pre-norm blocks (GPT-2, Radford et al. 2019): x += Attn(Norm(x)); x += MLP(Norm(x)); a final
norm; rotary positions (RoPE); optional grouped-query attention (Ainslie et al. 2023), QK-norm
(Dehghani et al. 2023; Wortsman et al. 2024), SwiGLU (Shazeer 2020) and tied embeddings.

Decoding (lm/sample.py) applies the same parameters with `decode=True` and a mutable "cache"
collection (`init_cache`): each call appends its tokens' keys and values to every layer's cache
and attends over it, so a generated token costs one position's forward pass.

Initialisation (GPT-2 / nanoGPT): every matrix N(0, init_std^2), init_std = 0.02 by default;
the two residual-output projections (attention out, MLP out) N(0, (init_std / sqrt(2 L))^2) so
the residual stream's variance does not grow with depth L; norm scales 1, biases 0.

muP (Yang et al. 2022, "Tensor Programs V", Table 3 and App. B, as the `mup` package implements
it), on when model.mup_base_width > 0, with width multiplier m = d_model / mup_base_width:
hidden matrices are initialised with std init_std / sqrt(m) (and their Adam learning rate is
divided by m, see optim.lr_multipliers); embeddings, norms and biases are unchanged; the output
logits are multiplied by 1 / m; attention scores are scaled by 1 / head_dim instead of
1 / sqrt(head_dim). A model at m = 1 differs from the standard one only in that attention scale.
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from lm.model import attention, matmul
from lm.model.config import ModelConfig
from lm.model.layers import (
    MX_STATS,
    DenseGeneral,
    apply_rotary,
    cast_sharded,
    mx_probe,
    normal_init,
    rotary_table,
)

constrain = nn.with_logical_constraint  # activation sharding by logical axis (lm/train/sharding.py)

# Activation checkpointing (model.remat): what the backward pass may keep from the forward
# instead of recomputing it (MaxText's policies). dots_except_mlp keeps the attention
# projections (named below), not the MLP's activations.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_except_mlp": jax.checkpoint_policies.save_only_these_names(
        "query", "key", "value", "attn_out"),
}


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE, optional GQA and QK-norm; with `position`
    (decoding), x holds the positions from `position` on and attends over the KV cache."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cos, sin, position=None):
        c = self.cfg
        dt = c.compute_dtype
        batch, seq = x.shape[0], x.shape[1]

        def project(name, heads, axis):
            """(d_model, heads * head_dim) kernel: every weight is a plain matrix, which is what
            matrix optimizers (Muon, SOAP, Shampoo) precondition."""
            y = DenseGeneral("btd,dn->btn", (c.d_model, heads * c.head_dim), ("embed", axis),
                             c.hidden_init_std, dt, c.mx_for("qkv"), flat=c.flat_matmuls,
                             name=name)(x)
            y = checkpoint_name(y, name)
            return constrain(y.reshape(batch, seq, heads, c.head_dim),
                             ("batch", "seq", axis, "head_dim"))

        q = project("query", c.n_heads, "heads")
        k = project("key", c.n_kv_heads, "kv_heads")
        v = project("value", c.n_kv_heads, "kv_heads")
        if c.qk_norm:
            q = c.make_norm("query_norm", axis_name="head_dim")(q)
            k = c.make_norm("key_norm", axis_name="head_dim")(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        def cached(name, new):
            """The cache (batch, max_seq_len, kv_heads, head_dim) with `new` written from
            `position` on."""
            shape = (batch, c.max_seq_len, c.n_kv_heads, c.head_dim)
            cache = self.variable("cache", name, jnp.zeros, shape, dt)
            cache.value = jax.lax.dynamic_update_slice_in_dim(cache.value, new.astype(dt),
                                                              position, axis=1)
            return cache.value

        if position is None:
            out = attention.attend(q, k, v, implementation=c.attention,
                                   scale=c.attention_scale, dtype=dt)
        else:
            out = attention.attend_cached(q, cached("cached_key", k), cached("cached_value", v),
                                          position, scale=c.attention_scale, dtype=dt)
        out = constrain(out.reshape(batch, seq, c.d_attn), ("batch", "seq", "heads"))
        out = DenseGeneral("btn,nd->btd", (c.d_attn, c.d_model), ("heads", "embed"),
                           c.residual_init_std, dt, c.mx_for("attn_out"), flat=c.flat_matmuls,
                           name="out")(out)
        return checkpoint_name(out, "attn_out")


class Mlp(nn.Module):
    """GELU MLP (two matrices) or SwiGLU (three: gate, up, down)."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        c = self.cfg
        dt = c.compute_dtype

        def up(name):
            return DenseGeneral("btd,df->btf", (c.d_model, c.d_ff), ("embed", "mlp"),
                                c.hidden_init_std, dt, c.mx_for("mlp"), flat=c.flat_matmuls,
                                name=name)(x)

        if c.activation == "swiglu":
            h = nn.silu(up("gate").astype(jnp.float32)) * up("up").astype(jnp.float32)
        else:
            h = nn.gelu(up("up").astype(jnp.float32))
        h = constrain(h, ("batch", "seq", "mlp"))
        return DenseGeneral("btf,fd->btd", (c.d_ff, c.d_model), ("mlp", "embed"),
                            c.residual_init_std, dt, c.mx_for("mlp"), flat=c.flat_matmuls,
                            name="down")(h.astype(dt))


class Block(nn.Module):
    """Pre-norm residual block."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cos, sin, position=None):
        c = self.cfg
        x = x + Attention(c, name="attn")(c.make_norm("attn_norm")(x), cos, sin, position)
        x = constrain(x, ("batch", "seq", "embed"))
        x = x + Mlp(c, name="mlp")(c.make_norm("mlp_norm")(x))
        return constrain(x, ("batch", "seq", "embed"))


class ScannedBlock(Block):
    """A block as nn.scan's body: (carry, per-layer output)."""

    def __call__(self, x, cos, sin, position=None):
        return super().__call__(x, cos, sin, position), None


def blocks(cfg: ModelConfig, x, cos, sin, position=None):
    """The n_layers blocks: unrolled (block_0, block_1, ...), or with model.scan_layers one
    block scanned over a stack of parameters with a leading "layers" axis (module `layers`), so
    that compile time and program size do not grow with depth. model.remat checkpoints each
    block with its policy. `position`: decoding from there on (see Attention)."""
    args = (cos, sin) if position is None else (cos, sin, position)
    policy = REMAT_POLICIES[cfg.remat]
    remat = (lambda module: nn.remat(module, policy=policy, prevent_cse=not cfg.scan_layers)
             ) if cfg.remat != "none" else (lambda module: module)
    if not cfg.scan_layers:
        for i in range(cfg.n_layers):
            x = remat(Block)(cfg, name=f"block_{i}")(x, *args)
        return x
    scanned = nn.scan(remat(ScannedBlock), variable_axes={"params": 0, MX_STATS: 0, "cache": 0},
                      split_rngs={"params": True}, in_axes=(nn.broadcast,) * len(args),
                      length=cfg.n_layers, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = scanned(cfg, name="layers")(x, *args)
    return x


class Transformer(nn.Module):
    """tokens (batch, seq) int -> logits (batch, seq, vocab) float32, or with `hidden=True` the
    final normalized hidden states (batch, seq, d_model), for a loss that computes the logits
    chunk by chunk (lm.model.loss.chunked_next_token_loss). With `decode=True` the tokens
    continue the sequence held in the "cache" collection (`init_cache`), which must be mutable:
    they sit at positions cache["position"], +1, ... and are appended to it."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens, hidden: bool = False, decode: bool = False):
        c = self.cfg
        dt = c.compute_dtype
        embedding = self.param("embedding", normal_init(c.init_std, ("vocab", "embed")),
                               (c.vocab_size, c.d_model), jnp.float32)
        # The lookup reads whole rows: gather the table's model dim first (FSDP splits it), so
        # that XLA does not fall back to replicating the table inside the gather.
        table = constrain(embedding, ("vocab", None))
        x = constrain(jnp.take(table, tokens, axis=0).astype(dt), ("batch", "seq", "embed"))
        cos, sin = rotary_table(c.max_seq_len, c.head_dim, c.rope_base)
        seq = tokens.shape[1]
        start = None
        if decode:
            position = self.variable("cache", "position", jnp.zeros, (), jnp.int32)
            start, position.value = position.value, position.value + seq
            cos, sin = (jax.lax.dynamic_slice_in_dim(t, start, seq) for t in (cos, sin))
        else:
            cos, sin = cos[:seq], sin[:seq]
        x = blocks(c, x, cos, sin, start)
        x = c.make_norm("final_norm")(x)
        if hidden:
            return x
        if c.tie_embeddings:
            head_mx = c.mx_for("lm_head")
            weight = cast_sharded(embedding, dt, ("vocab", "embed"))
            logits = matmul.einsum("btd,vd->btv", x, weight, dtype=dt, mx=head_mx,
                                   probe=mx_probe(self, head_mx), out_dtype=jnp.float32,
                                   flat=c.flat_matmuls)
        else:
            logits = DenseGeneral("btd,dv->btv", (c.d_model, c.vocab_size), ("embed", "vocab"),
                                  c.init_std, dt, c.mx_for("lm_head"), out_dtype=jnp.float32,
                                  flat=c.flat_matmuls, name="unembed")(x)
        logits = constrain(logits, ("batch", "seq", "vocab"))
        return logits / c.width_mult if c.mup_base_width else logits


def _initializer(model: Transformer) -> Transformer:
    """The same parameters, traced with the reference attention: initialisation never runs a
    device-specific kernel (splash compiles for TPUs only)."""
    return Transformer(dataclasses.replace(model.cfg, attention="einsum", remat="none"))


def init_params(model: Transformer, rng: jax.Array, seq_len: int):
    """Float32 parameters (logical-axis boxes removed) for `model`."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    return nn.meta.unbox(_initializer(model).init(rng, tokens)["params"])


def _abstract_variables(model: Transformer, batch: int = 1, decode: bool = False) -> dict:
    return jax.eval_shape(functools.partial(_initializer(model).init, decode=decode),
                          jax.random.PRNGKey(0), jnp.zeros((batch, 1), jnp.int32))


def for_decoding(model: Transformer) -> Transformer:
    """`model` as decoding runs it: the einsum attention (lm.model.attention.attend_cached) and
    no activation checkpointing (nothing is differentiated)."""
    return _initializer(model)


def init_cache(model: Transformer, batch: int) -> dict:
    """An empty "cache" collection for decoding `batch` sequences of up to model.cfg.max_seq_len
    tokens: every layer's keys and values (in the compute dtype) and the position 0."""
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  dict(_abstract_variables(model, batch, decode=True)["cache"]))


def mx_probes(model: Transformer) -> dict:
    """Zeros for the model's "mx_stats" collection (one probe per MX-quantized matmul, see
    lm.model.layers.mx_probe); empty without MX."""
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  dict(_abstract_variables(model).get(MX_STATS, {})))


def param_logical_axes(model: Transformer):
    """Tree of PartitionSpecs of logical axis names, one per parameter (nothing is computed)."""
    return nn.get_partition_spec(_abstract_variables(model)["params"])
