"""MX precision presets by name: WEIGHTS/ACTIVATIONS[/OPTION...] -> the precision fields they set
(configs/mx.py trains them; lm.sweep's `precision` axis takes them).

WEIGHTS and ACTIVATIONS are each fp8_e4m3 (or e4m3), fp8_e5m2 (e5m2), fp6_e3m2 (e3m2), fp6_e2m3
(e2m3), fp4_e2m1 (e2m1), int8, or bf16 (not MX-quantized: bfloat16 operands) -- so e4m3/bf16 is
"MX weights with bf16 activations", and the 5 x 5 grid of Su et al. 2025 is
{e4m3, e5m2, e2m3, e3m2, bf16}^2. Options: fwd_only (backward GEMMs unquantized), bump_exp
(scale_rule bump_on_overflow), half_away (microxcaling's rounding, as the paper ran), ln_bf16
(norm scales/biases rounded to bf16, as the paper's "quantized LayerNorm"), no_ln_affine (norms
without scale/bias). Gradients take the activation format, as in microxcaling.
"""
_FORMATS = {"e4m3": "mxfp8_e4m3", "e5m2": "mxfp8_e5m2", "e3m2": "mxfp6_e3m2",
            "e2m3": "mxfp6_e2m3", "e2m1": "mxfp4_e2m1", "int8": "mxint8", "bf16": "bfloat16"}
_OPTIONS = {"fwd_only": {"mx_quantize_backprop": False},
            "bump_exp": {"mx_scale_rule": "bump_on_overflow"},
            "half_away": {"mx_rounding": "half_away"},
            "ln_bf16": {"norm_affine": "bfloat16"},
            "no_ln_affine": {"norm_affine": "none"}}


def _format(name: str) -> str:
    short = name.split("_", 1)[1] if name.startswith(("fp8_", "fp6_", "fp4_")) else name
    if short not in _FORMATS:
        raise ValueError(f"unknown MX preset format {name!r}; use one of {', '.join(_FORMATS)}")
    return _FORMATS[short]


def precision_fields(preset: str) -> dict:
    """The config.precision fields that `preset` sets (ValueError for an unknown part)."""
    weights, activations, *options = preset.split("/")
    fields = {"mx_weights": _format(weights), "mx_activations": _format(activations)}
    for option in options:
        if option not in _OPTIONS:
            raise ValueError(f"unknown MX preset option {option!r}; use {', '.join(_OPTIONS)}")
        fields.update(_OPTIONS[option])
    return fields
