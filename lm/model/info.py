"""Exact parameter counts and training FLOPs per token of a `ModelConfig`.

FLOPs follow Kaplan et al. 2020 (Table 1): a forward pass costs 2 N + 2 n_layer n_ctx d_attn per
token for N non-embedding parameters; training (forward + backward) costs three times that. The
output-logits matmul (2 d_model V per token forward) is real work that Kaplan's N leaves out with
the embeddings, so it is added here, as Hoffmann et al. 2022 (Chinchilla, App. F) count it:

    flops_per_token = 6 (N_matmul + d_model V) + 6 n_layer n_ctx d_attn

where N_matmul is the non-embedding parameters less the norms' scales and biases (elementwise,
not matmul, work). Causal masking halves the useful attention work; like Kaplan and the MFU
convention of PaLM (Chowdhery et al. 2022, App. B) the full n_ctx term is counted.
"""
import jax
import numpy as np

from lm.model import ModelConfig


def param_counts(cfg: ModelConfig) -> dict:
    """Analytic counts: total, embedding (input table and untied output table), non-embedding."""
    d, hd = cfg.d_model, cfg.head_dim
    per_dim = 0 if cfg.norm_affine == "none" else 1 if cfg.norm == "rmsnorm" else 2
    norm = per_dim * d
    head_norm = per_dim * hd if cfg.qk_norm else 0
    norms = cfg.n_layers * (2 * norm + 2 * head_norm) + norm  # + final norm
    embedding = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    non_embedding = _matmul_params(cfg) + norms
    return {"total": non_embedding + embedding, "embedding": embedding,
            "non_embedding": non_embedding}


def _matmul_params(cfg: ModelConfig) -> int:
    """Weights of the blocks' matmuls: q, k, v, out projections and the MLP."""
    d, h, kv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    mlp = (3 if cfg.activation == "swiglu" else 2) * d * cfg.d_ff
    return cfg.n_layers * (attn + mlp)


def count_pytree_params(params) -> int:
    """Number of scalars in a parameter pytree (shapes or arrays)."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward), see the module docstring."""
    matmul_params = _matmul_params(cfg) + cfg.d_model * cfg.vocab_size
    return 6 * matmul_params + 6 * cfg.n_layers * seq_len * cfg.d_attn


def model_info(cfg: ModelConfig, seq_len: int) -> dict:
    """Everything a run records about its model's size."""
    return {**{f"params/{k}": v for k, v in param_counts(cfg).items()},
            "flops_per_token": flops_per_token(cfg, seq_len), "seq_len": seq_len}
