"""optiscale parameters <-> transformers tensors, by name: kernels are (in, out) matrices, a
torch Linear's weight is (out, in), so every kernel is transposed; tables and norm vectors are
copied. Both directions are exact (a transpose moves bits, it computes nothing), except where
the export folds something the transformers model cannot express (`to_hf`)."""
import jax
import numpy as np

from lm.hf.architectures import Architecture
from lm.model import mx as mx_lib


def _block_names(cfg, arch: Architecture) -> list[tuple[str, tuple, bool]]:
    """(transformers name inside a layer, path inside an optiscale block, is a kernel)."""
    names = [(f"self_attn.{hf}_proj.weight", ("attn", ours, "kernel"), True)
             for hf, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))]
    if arch.qk_norm:
        names += [(f"self_attn.{hf}_norm.weight", ("attn", f"{ours}_norm", "scale"), False)
                  for hf, ours in (("q", "query"), ("k", "key"))]
    mlp = {"Starcoder2ForCausalLM": (("c_fc", "up"), ("c_proj", "down")),
           "ArceeForCausalLM": (("up_proj", "up"), ("down_proj", "down"))}.get(
        arch.name, (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")))
    names += [(f"mlp.{hf}.weight", ("mlp", ours, "kernel"), True) for hf, ours in mlp]
    norm_params = ("scale", "bias") if cfg.norm == "layernorm" else ("scale",)
    for hf, ours in (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "mlp_norm")):
        names += [(f"{hf}.{'weight' if p == 'scale' else 'bias'}", (ours, p), False)
                  for p in norm_params]
    return names


def names(cfg, arch: Architecture) -> list[tuple[str, tuple, bool]]:
    """(transformers name, path in the optiscale parameters of an unscanned model, is a
    kernel) of every tensor; the head's row is absent when the embeddings are tied."""
    out = [("model.embed_tokens.weight", ("embedding",), False)]
    for i in range(cfg.n_layers):
        out += [(f"model.layers.{i}.{hf}", (f"block_{i}", *path), kernel)
                for hf, path, kernel in _block_names(cfg, arch)]
    out += [("model.norm.weight", ("final_norm", "scale"), False)]
    if cfg.norm == "layernorm":
        out += [("model.norm.bias", ("final_norm", "bias"), False)]
    if not cfg.tie_embeddings:
        out += [("lm_head.weight", ("unembed", "kernel"), True)]
    return out


def unscanned(params: dict, cfg) -> dict:
    """`params` with scanned layers (one stacked `layers` tree) split into block_0, block_1..."""
    if not cfg.scan_layers:
        return params
    rest = {k: v for k, v in params.items() if k != "layers"}
    return {**rest, **{f"block_{i}": jax.tree_util.tree_map(lambda x, i=i: x[i],
                                                           params["layers"])
                       for i in range(cfg.n_layers)}}


def _scanned(params: dict, cfg) -> dict:
    """The inverse of `unscanned`: block_i stacked into `layers` for a scanned model."""
    if not cfg.scan_layers:
        return params
    blocks = [params.pop(f"block_{i}") for i in range(cfg.n_layers)]
    return {**params, "layers": jax.tree_util.tree_map(lambda *x: np.stack(x), *blocks)}


def _get(tree: dict, path: tuple):
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def to_hf(params: dict, cfg, arch: Architecture) -> dict[str, np.ndarray]:
    """The float32 transformers tensors of optiscale `params` (the masters, also for an MX run:
    transformers computes unquantized). Norms without affine parameters (precision.norm_affine
    =none) export scale 1 and bias 0, bf16-rounded ones their rounded values; muP's attention
    scale 1/head_dim is folded into the query projection (or its QK-norm scale) and its output
    multiplier 1/m into the (then untied) head: exact up to float32 round-off."""
    flat = unscanned(jax.device_get(params), cfg)
    out = {}
    for hf, path, kernel in names(cfg, arch):
        value = _get(flat, path)
        if value is None:  # a norm without affine parameters
            value = np.full(cfg.d_model if path[-2] != "query_norm" else cfg.head_dim,
                            1.0 if path[-1] == "scale" else 0.0, np.float32)
        elif path[-1] in ("scale", "bias") and cfg.norm_affine == "bfloat16":
            rounding = cfg.mx.rounding if cfg.mx else "even"
            value = mx_lib.round_to_bfloat16(value, rounding)
        out[hf] = np.ascontiguousarray(np.asarray(value, np.float32).T if kernel else value)
    if cfg.mup_base_width:
        fold = np.float32(cfg.head_dim ** -0.5)  # 1/head_dim = fold * transformers' 1/sqrt(d)
        query = "self_attn.q_norm.weight" if cfg.qk_norm else "self_attn.q_proj.weight"
        for i in range(cfg.n_layers):
            out[f"model.layers.{i}.{query}"] = out[f"model.layers.{i}.{query}"] * fold
        head = out.get("lm_head.weight", out["model.embed_tokens.weight"])
        out["lm_head.weight"] = head / np.float32(cfg.width_mult)
    return out


def from_hf(tensors: dict, cfg, arch: Architecture) -> dict:
    """optiscale parameters (numpy, float32) of transformers `tensors`, for a model whose norms
    have float32 affine parameters and no muP (lm/hf/load.py refuses the others). KeyError
    names a missing tensor."""
    params = {}
    for hf, path, kernel in names(cfg, arch):
        value = np.asarray(tensors[hf], np.float32)
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.ascontiguousarray(value.T) if kernel else value
    return _scanned(params, cfg)
