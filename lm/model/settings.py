"""The model's settings (`config.model`): each field's default, doc and allowed values, defined
once (core/fields.py). `ModelConfig` (config.py) is these fields resolved for a run; the
transformer reads nothing else. JAX-free, so that building a config loads no JAX.
"""
from core.fields import Field, Section, nonnegative, positive
from lm.model import ladder

NORMS = ("rmsnorm", "layernorm")
ACTIVATIONS = ("gelu", "swiglu")
# Activation checkpointing per block (lm.model.transformer.REMAT_POLICIES says what each keeps).
REMATS = ("none", "full", "dots", "dots_except_mlp")
# Attention kernels (lm/model/attention.py) and the backend each runs on, if only one.
ATTENTIONS = ("auto", "einsum", "xla", "cudnn", "splash")
ATTENTION_BACKEND = {"cudnn": "gpu", "splash": "tpu"}
# Compute dtypes of activations ("auto": bfloat16 on GPU and TPU, float32 on CPU).
DTYPES = ("auto", "float32", "bfloat16")
# Norm scale/bias handling (lm.model.layers.Norm).
NORM_AFFINE = ("float32", "bfloat16", "none")
# MX matmuls (lm/model/mx.py): the layer kinds that may be quantized, the rounding of elements,
# the shared-scale rule, and how quantized GEMMs run.
MX_LAYERS = ("qkv", "attn_out", "mlp", "lm_head")
MX_ROUNDINGS = ("even", "half_away")
MX_SCALE_RULES = ("floor", "bump_on_overflow")
MX_BACKENDS = ("emulated", "scaled_dot")
# Fields the train step reads (the loss), not the transformer.
LOSS_FIELDS = ("z_loss", "loss_chunk")


def _divisible_heads(m) -> str:
    if not m["head_dim"] and m["d_model"] % m["n_heads"]:
        return (f"model.d_model={m['d_model']} is not divisible by model.n_heads="
                f"{m['n_heads']}; choose n_heads dividing d_model, or set model.head_dim "
                "explicitly")
    kv = m["n_kv_heads"] or m["n_heads"]
    if m["n_heads"] % kv:
        return (f"model.n_heads={m['n_heads']} is not divisible by model.n_kv_heads={kv}; "
                "grouped-query attention needs each kv head to serve a whole number of query "
                "heads")
    head_dim = m["head_dim"] or m["d_model"] // m["n_heads"]
    if head_dim % 2:
        return (f"head dimension {head_dim} is odd; rotary embedding rotates pairs of "
                "dimensions: choose an even model.head_dim (or d_model / n_heads)")
    return ""


MODEL = Section("model", "the decoder-only transformer", dict(
    vocab_size=nonnegative(0, "0: the tokenizer's vocabulary size; larger pads the embedding "
                              "(e.g. to a multiple of mesh.tensor)"),
    d_model=positive(128, "model width"),
    n_layers=positive(4, "transformer blocks"),
    n_heads=positive(4, "attention heads"),
    n_kv_heads=nonnegative(0, "0: = n_heads (multi-head); fewer: grouped-query attention"),
    head_dim=nonnegative(0, "0: d_model // n_heads"),
    d_ff=nonnegative(0, "MLP hidden units; 0: 4 * d_model"),
    norm=Field("rmsnorm", "rmsnorm | layernorm (LayerNorm has scale and bias)", choices=NORMS),
    activation=Field("gelu", "gelu | swiglu", choices=ACTIVATIONS),
    qk_norm=Field(False, "normalise queries and keys per head (Dehghani et al. 2023)"),
    tie_embeddings=Field(True, "output logits use the input embedding table"),
    rope_base=positive(10000.0, "rotary embedding base (Su et al. 2021)"),
    max_seq_len=positive(1024, "size of the rotary table; data.seq_len must not exceed it"),
    init_std=positive(0.02, "N(0, init_std^2) init; residual-output projections / "
                            "sqrt(2 n_layers) (GPT-2)"),
    z_loss=nonnegative(0.0, "PaLM z-loss coefficient (1e-4 in PaLM); 0 disables"),
    loss_chunk=Field(-1, "cross-entropy over chunks of this many positions, each chunk's "
                         "logits recomputed in the backward pass; 0: one chunk; -1: 512 "
                         "positions when the vocabulary has >= 32768 entries", minimum=-1),
    mup_base_width=nonnegative(0, "0: standard parameterization; > 0: muP (Yang et al. 2022) "
                                  "with width multiplier d_model / mup_base_width"),
    attention=Field("auto", "auto (cudnn on GPU, splash on TPU, einsum on CPU) | einsum | xla | "
                            "cudnn | splash (lm/model/attention.py)", choices=ATTENTIONS),
    remat=Field("none", "activation checkpointing per block: none | full | dots (keep matmul "
                        "outputs) | dots_except_mlp (keep attention projections)",
                choices=REMATS),
    scan_layers=Field(False, "one scanned block over stacked parameters: compile time and "
                             "program size independent of depth (fixed for a run)"),
), rules=(_divisible_heads,))


def model_config_dict(size: str = ""):
    """config.model's defaults, with d_model, n_layers and n_heads of ladder size `size`."""
    model = MODEL.config_dict()
    if size:
        ladder.apply_size(model, size)
    return model
