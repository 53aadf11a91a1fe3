"""The model's resolved hyperparameters (`ModelConfig`) and the quantities derived from them:
head and MLP sizes, muP's width multiplier and init scales, the attention scale, each layer's
MX formats. The fields, their defaults and docs are those of `config.model`, defined once in
lm/model/settings.py; a ModelConfig adds what a run resolves (dtype, MX formats, norm affine).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from lm.model import attention as attention_lib
from lm.model import matmul
from lm.model import mx as mx_lib
from lm.model.layers import Norm
from lm.model.settings import LOSS_FIELDS, MODEL


def resolve_dtype(name: str, backend: str | None = None) -> str:
    """precision.activation_dtype: "auto" is bfloat16 on GPU and TPU (float32 parameters and
    optimizer state stay the masters) and float32 on CPU, which has no fast bf16 matmuls."""
    if name != "auto":
        return name
    return "bfloat16" if (backend or jax.default_backend()) in ("gpu", "tpu") else "float32"


def mup_width_mult(model_cfg) -> float | None:
    """muP width multiplier d_model / mup_base_width of a model config; None without muP."""
    return model_cfg.d_model / model_cfg.mup_base_width if model_cfg.mup_base_width else None


class _Derived:
    """What derives from a ModelConfig's fields (the dataclass below adds the fields)."""

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int, dtype: str, mx=None,
                    mx_layers=(), norm_affine: str = "float32") -> "ModelConfig":
        """Fills the derived fields (0 means "derive"): vocab from the tokenizer, kv heads = heads,
        head_dim = d_model / heads, d_ff = 4 d_model."""
        fields = {key: value for key, value in dict(model_cfg).items()
                  if key not in LOSS_FIELDS}  # the train step reads those
        if not fields["vocab_size"]:
            fields["vocab_size"] = vocab_size
        if not fields["n_kv_heads"]:
            fields["n_kv_heads"] = fields["n_heads"]
        if not fields["head_dim"]:
            fields["head_dim"] = fields["d_model"] // max(fields["n_heads"], 1)
        if not fields["d_ff"]:
            fields["d_ff"] = 4 * fields["d_model"]
        return cls(dtype=dtype, mx=mx, mx_layers=tuple(mx_layers), norm_affine=norm_affine,
                   **fields)

    @classmethod
    def for_run(cls, config, vocab_size: int, backend: str | None = None) -> "ModelConfig":
        """The model of a run config: config.model, in the precision config.precision says,
        with "auto" settings resolved for `backend` (default: JAX's default backend)."""
        model = cls.from_config(config.model, vocab_size,
                                resolve_dtype(config.precision.activation_dtype, backend),
                                **mx_lib.formats_from_config(config.precision),
                                norm_affine=config.precision.norm_affine)
        backend = backend or jax.default_backend()
        return dataclasses.replace(
            model, attention=attention_lib.resolve(model.attention, backend),
            flat_matmuls=matmul.flattens_tokens(backend))

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def mx_for(self, layer: str) -> mx_lib.MatmulFormats | None:
        """The MX formats of a layer kind ("qkv", "attn_out", "mlp", "lm_head"), or None."""
        return self.mx if layer in self.mx_layers else None

    def make_norm(self, name: str, axis_name: str = "norm") -> Norm:
        """A norm layer of this model (its kind, dtype and affine handling)."""
        return Norm(self.norm, self.compute_dtype, axis_name=axis_name,
                    affine=self.norm_affine, rounding=self.mx.rounding if self.mx else "even",
                    name=name)

    @property
    def d_attn(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def width_mult(self) -> float:
        """muP width multiplier m (1 under the standard parameterization)."""
        return mup_width_mult(self) or 1.0

    @property
    def hidden_init_std(self) -> float:
        """Init std of hidden matrices: init_std, divided by sqrt(m) under muP."""
        return self.init_std / math.sqrt(self.width_mult)

    @property
    def residual_init_std(self) -> float:
        """Init std of the projections that write into the residual stream (GPT-2)."""
        return self.hidden_init_std / math.sqrt(2 * self.n_layers)

    @property
    def attention_scale(self) -> float:
        """1 / sqrt(head_dim) (Vaswani et al. 2017); 1 / head_dim under muP."""
        return 1 / self.head_dim if self.mup_base_width else 1 / math.sqrt(self.head_dim)


# The fields: config.model's (lm/model/settings.py) less the loss settings, then what a run
# resolves: the compute dtype, the precision of the matmuls (not of the parameters, so it may
# change on resume: MX formats, lm/model/mx.py, and the layer kinds they apply to) and the
# norms' affine handling. `attention` holds the kernel resolved for the run's backend, and
# `flat_matmuls` how its weight matmuls take the activations (lm/model/matmul.py).
ModelConfig = dataclasses.make_dataclass(
    "ModelConfig",
    [(key, type(field.default)) for key, field in MODEL.fields.items() if key not in LOSS_FIELDS]
    + [("dtype", str), ("mx", mx_lib.MatmulFormats | None, None), ("mx_layers", tuple, ()),
       ("norm_affine", str, "float32"), ("flat_matmuls", bool, False)],
    bases=(_Derived,), frozen=True)
ModelConfig.__module__ = __name__  # where pickle finds it
ModelConfig.__doc__ = ("Resolved model hyperparameters: config.model's fields "
                       "(lm/model/settings.py) and the run's precision.")
