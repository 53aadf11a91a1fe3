"""The decoder-only transformer: pure functions of (parameters, tokens).

    config.py       ModelConfig: resolved hyperparameters and what derives from them
    transformer.py  Attention, MLP, blocks, the Transformer; init, logical axes, KV cache
    layers.py       dense projections, norms, rotary embedding
    matmul.py       the one entry point of every matrix multiply
    mx.py           OCP Microscaling formats, quantized matmuls emulated bit-exactly
    loss.py         next-token cross-entropy and z-loss
    info.py         exact parameter counts and training FLOPs per token
    coord_check.py  muP's coordinate check (python -m lm.model.coord_check)
"""
from lm.model.config import ACTIVATIONS, NORMS, ModelConfig, mup_width_mult
from lm.model.transformer import (
    Transformer,
    for_decoding,
    init_cache,
    init_params,
    mx_probes,
    param_logical_axes,
)

__all__ = ["ACTIVATIONS", "NORMS", "ModelConfig", "Transformer", "for_decoding", "init_cache",
           "init_params", "mup_width_mult", "mx_probes", "param_logical_axes"]
