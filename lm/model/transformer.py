"""Decoder-only transformer LM in Flax linen: pure `init` / `apply`.

    model = Transformer(ModelConfig.from_config(config.model, vocab_size, dtype))
    params = model.init(rng, tokens)["params"]
    logits = model.apply({"params": params}, tokens)

Pre-norm blocks (GPT-2, Radford et al. 2019): x += Attn(Norm(x)); x += MLP(Norm(x)); a final
norm; rotary positions (RoPE); optional grouped-query attention (Ainslie et al. 2023), QK-norm
(Dehghani et al. 2023; Wortsman et al. 2024), SwiGLU (Shazeer 2020) and tied embeddings.

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
import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.model import matmul
from lm.model.config import ModelConfig
from lm.model.layers import (
    MX_STATS,
    DenseGeneral,
    apply_rotary,
    mx_probe,
    normal_init,
    rotary_table,
)

constrain = nn.with_logical_constraint  # activation sharding by logical axis (lm/train/sharding.py)


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE, optional GQA and QK-norm."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cos, sin):
        c = self.cfg
        dt = c.compute_dtype
        batch, seq = x.shape[0], x.shape[1]

        def project(name, heads, axis):
            """(d_model, heads * head_dim) kernel: every weight is a plain matrix, which is what
            matrix optimizers (Muon, SOAP, Shampoo) precondition."""
            y = DenseGeneral("btd,dn->btn", (c.d_model, heads * c.head_dim), ("embed", axis),
                             c.hidden_init_std, dt, c.mx_for("qkv"), name=name)(x)
            return constrain(y.reshape(batch, seq, heads, c.head_dim),
                             ("batch", "seq", axis, "head_dim"))

        q = project("query", c.n_heads, "heads")
        k = project("key", c.n_kv_heads, "kv_heads")
        v = project("value", c.n_kv_heads, "kv_heads")
        if c.qk_norm:
            q = c.make_norm("query_norm", axis_name="head_dim")(q)
            k = c.make_norm("key_norm", axis_name="head_dim")(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        groups = c.n_heads // c.n_kv_heads
        q = q.reshape(batch, seq, c.n_kv_heads, groups, c.head_dim)
        scores = matmul.einsum("btkgh,bskh->bkgts", q, k, dtype=jnp.float32)
        scores = scores * c.attention_scale
        causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))
        scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1)
        out = matmul.einsum("bkgts,bskh->btkgh", probs, v, dtype=dt)
        out = constrain(out.reshape(batch, seq, c.d_attn), ("batch", "seq", "heads"))
        return DenseGeneral("btn,nd->btd", (c.d_attn, c.d_model), ("heads", "embed"),
                            c.residual_init_std, dt, c.mx_for("attn_out"), name="out")(out)


class Mlp(nn.Module):
    """GELU MLP (two matrices) or SwiGLU (three: gate, up, down)."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        c = self.cfg
        dt = c.compute_dtype

        def up(name):
            return DenseGeneral("btd,df->btf", (c.d_model, c.d_ff), ("embed", "mlp"),
                                c.hidden_init_std, dt, c.mx_for("mlp"), name=name)(x)

        if c.activation == "swiglu":
            h = nn.silu(up("gate").astype(jnp.float32)) * up("up").astype(jnp.float32)
        else:
            h = nn.gelu(up("up").astype(jnp.float32))
        h = constrain(h, ("batch", "seq", "mlp"))
        return DenseGeneral("btf,fd->btd", (c.d_ff, c.d_model), ("mlp", "embed"),
                            c.residual_init_std, dt, c.mx_for("mlp"), name="down")(h.astype(dt))


class Block(nn.Module):
    """Pre-norm residual block."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, cos, sin):
        c = self.cfg
        x = x + Attention(c, name="attn")(c.make_norm("attn_norm")(x),
                                          cos, sin)
        x = constrain(x, ("batch", "seq", "embed"))
        x = x + Mlp(c, name="mlp")(c.make_norm("mlp_norm")(x))
        return constrain(x, ("batch", "seq", "embed"))


class Transformer(nn.Module):
    """tokens (batch, seq) int -> logits (batch, seq, vocab) float32."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens):
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
        cos, sin = cos[:seq], sin[:seq]
        for i in range(c.n_layers):
            x = Block(c, name=f"block_{i}")(x, cos, sin)
        x = c.make_norm("final_norm")(x)
        if c.tie_embeddings:
            head_mx = c.mx_for("lm_head")
            logits = matmul.einsum("btd,vd->btv", x, embedding, dtype=jnp.float32, mx=head_mx,
                                   probe=mx_probe(self, head_mx))
        else:
            logits = DenseGeneral("btd,dv->btv", (c.d_model, c.vocab_size), ("embed", "vocab"),
                                  c.init_std, jnp.float32, c.mx_for("lm_head"),
                                  name="unembed")(x)
        logits = constrain(logits, ("batch", "seq", "vocab"))
        return logits / c.width_mult if c.mup_base_width else logits


def init_params(model: Transformer, rng: jax.Array, seq_len: int):
    """Float32 parameters (logical-axis boxes removed) for `model`."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    return nn.meta.unbox(model.init(rng, tokens)["params"])


def mx_probes(model: Transformer) -> dict:
    """Zeros for the model's "mx_stats" collection (one probe per MX-quantized matmul, see
    lm.model.layers.mx_probe); empty without MX."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                  dict(shapes.get(MX_STATS, {})))


def param_logical_axes(model: Transformer):
    """Tree of PartitionSpecs of logical axis names, one per parameter (nothing is computed)."""
    boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))
    return nn.get_partition_spec(boxed["params"])
