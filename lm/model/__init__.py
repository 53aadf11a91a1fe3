"""The decoder-only transformer: pure functions of (parameters, tokens).

    settings.py     config.model's fields: defaults, docs, allowed values (JAX-free)
    ladder.py       the model sizes, d32_l2 .. d2048_l20 (python -m lm.model.ladder)
    config.py       ModelConfig: resolved hyperparameters and what derives from them
    transformer.py  Attention, MLP, blocks, the Transformer; init, logical axes, KV cache
    layers.py       dense projections, norms, rotary embedding
    matmul.py       the one entry point of every matrix multiply
    mx.py           OCP Microscaling formats, quantized matmuls emulated bit-exactly
    loss.py         next-token cross-entropy and z-loss
    info.py         exact parameter counts and training FLOPs per token
"""
from core import lazy

# Loaded on first use, so that `lm.model.settings` is importable without JAX.
__getattr__, __dir__ = lazy.exports(__name__, {
    "ACTIVATIONS": ".settings", "NORMS": ".settings", "ModelConfig": ".config",
    "mup_width_mult": ".config", "Transformer": ".transformer", "for_decoding": ".transformer",
    "init_cache": ".transformer", "init_params": ".transformer", "mx_probes": ".transformer",
    "param_logical_axes": ".transformer"})
