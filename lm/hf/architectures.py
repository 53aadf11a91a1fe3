"""Which standard transformers architecture computes each optiscale model, and the checks of a
transformers config.json against a run's model (train.init_from).

Every architecture here is a pre-norm decoder with half-split (rotate_half) RoPE, grouped-query
attention, no biases in its dense layers and the attention scale 1/sqrt(head_dim), as
lm/model/transformer.py; they differ in what optiscale's model.norm, model.activation and
model.qk_norm choose. LayerNorm with SwiGLU and QK-norm outside Llama's shape have no
architecture here and are refused.
"""
import dataclasses

from lm.errors import ConfigError

NORM_EPS = 1e-6  # lm.model.layers.Norm's
GELU = "gelu_pytorch_tanh"  # jax.nn.gelu's default, the tanh approximation


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str  # config.json's "architectures" entry
    config_class: str  # its transformers config class
    norm: str  # the optiscale model.norm, model.activation and model.qk_norm it computes
    activation: str
    qk_norm: bool
    hidden_act: str
    eps_field: str  # the config field of the norms' epsilon
    fixed: dict  # further config fields that must hold these values (biases, sliding windows)


ARCHITECTURES = (
    Architecture("LlamaForCausalLM", "LlamaConfig", "rmsnorm", "swiglu", False, "silu",
                 "rms_norm_eps", dict(attention_bias=False, mlp_bias=False)),
    Architecture("Qwen3ForCausalLM", "Qwen3Config", "rmsnorm", "swiglu", True, "silu",
                 "rms_norm_eps", dict(attention_bias=False, use_sliding_window=False)),
    Architecture("ArceeForCausalLM", "ArceeConfig", "rmsnorm", "gelu", False, GELU,
                 "rms_norm_eps", dict(attention_bias=False, mlp_bias=False)),
    Architecture("Starcoder2ForCausalLM", "Starcoder2Config", "layernorm", "gelu", False, GELU,
                 "norm_epsilon", dict(use_bias=False, sliding_window=None)),
)

# transformers config field -> the config.model field it must equal.
SHAPE_FIELDS = (("hidden_size", "d_model"), ("num_hidden_layers", "n_layers"),
                ("num_attention_heads", "n_heads"), ("num_key_value_heads", "n_kv_heads"),
                ("head_dim", "head_dim"), ("intermediate_size", "d_ff"),
                ("vocab_size", "vocab_size"), ("tie_word_embeddings", "tie_embeddings"))


def _supported() -> str:
    return "; ".join(f"{a.name} (model.norm={a.norm}, model.activation={a.activation}, "
                     f"model.qk_norm={a.qk_norm})" for a in ARCHITECTURES)


def architecture_of(cfg) -> Architecture:
    """The architecture of ModelConfig `cfg`; ConfigError, naming the options, for none."""
    for arch in ARCHITECTURES:
        if (arch.norm, arch.activation, arch.qk_norm) == (cfg.norm, cfg.activation,
                                                          cfg.qk_norm):
            if arch.norm == "layernorm" and cfg.head_dim * cfg.n_heads != cfg.d_model:
                break  # Starcoder2 is exact only where head_dim = d_model / n_heads
            return arch
    raise ConfigError(f"model.norm={cfg.norm}, model.activation={cfg.activation}, model.qk_norm="
                      f"{cfg.qk_norm}, head_dim={cfg.head_dim}: no standard transformers "
                      f"architecture computes this model; exported are {_supported()} "
                      "(Starcoder2 with head_dim = d_model / n_heads)")


def config_fields(cfg, arch: Architecture, eos_id: int) -> dict:
    """The transformers config of `cfg` as `arch` (its class's keyword arguments). muP's output
    multiplier is folded into an untied head (lm/hf/weights.py), so a muP model exports untied."""
    return dict(
        architectures=[arch.name], vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_seq_len, hidden_act=arch.hidden_act,
        rope_parameters=dict(rope_type="default", rope_theta=float(cfg.rope_base)),
        tie_word_embeddings=bool(cfg.tie_embeddings and not cfg.mup_base_width),
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, dtype="float32",
        **{arch.eps_field: NORM_EPS}, **arch.fixed)


def check_hf_config(hf, cfg, where: str) -> Architecture:
    """The architecture of transformers config `hf` (read from `where`), checked against the
    run's ModelConfig `cfg`: ConfigError naming each field that differs, both values, and the
    override that fixes it (or why none can)."""
    names = getattr(hf, "architectures", None) or []
    arch = next((a for a in ARCHITECTURES if a.name in names), None)
    if arch is None:
        raise ConfigError(f"{where} is a {names or 'model without architectures'}; "
                          f"train.init_from reads {_supported()}")
    wrong = []
    shape = {key: getattr(hf, key, None) for key, _ in SHAPE_FIELDS}
    shape["head_dim"] = shape["head_dim"] or hf.hidden_size // hf.num_attention_heads
    for field, value in (("norm", arch.norm), ("activation", arch.activation),
                         ("qk_norm", arch.qk_norm), *((model, shape[key])
                                                      for key, model in SHAPE_FIELDS)):
        if getattr(cfg, field) != value:
            tokenizer = (", with a tokenizer of at most as many tokens: the model's own is "
                         "--config.data.tokenizer=hf:DIR" if field == "vocab_size" else "")
            wrong.append(f"model.{field}: the run has {getattr(cfg, field)}, {arch.name} has "
                         f"{value} (--config.model.{field}={value}{tokenizer})")
    rope = getattr(hf, "rope_parameters", None) or {}
    theta = rope.get("rope_theta")
    if theta != cfg.rope_base:
        wrong.append(f"model.rope_base: the run has {cfg.rope_base}, {arch.name} has {theta} "
                     f"(--config.model.rope_base={theta})")
    fixed = {"rope_type": ("default", rope.get("rope_type")),
             arch.eps_field: (NORM_EPS, getattr(hf, arch.eps_field)),
             "hidden_act": (arch.hidden_act, hf.hidden_act),
             **{key: (value, getattr(hf, key, value)) for key, value in arch.fixed.items()}}
    wrong += [f"{key}={got} (optiscale computes {want}; no override changes that: only such "
              "models import)" for key, (want, got) in fixed.items() if got != want]
    if wrong:
        raise ConfigError(f"train.init_from: {where} does not match the run's model: "
                          + "; ".join(wrong))
    return arch
