"""MX precision presets on the quickstart model (Su et al. 2025's grid and interventions).

    python -m lm.train --config=configs/mx.py:e4m3/e4m3 --workdir=runs/mx_e4m3
    python -m lm.train --config=configs/mx.py:e4m3/bf16 --workdir=runs/mx_hybrid
    python -m lm.train --config=configs/mx.py:e4m3/e4m3/fwd_only/half_away --workdir=...

The argument is a preset of lm/model/mx_presets.py, WEIGHTS/ACTIVATIONS[/OPTION...] (the formats
and options are listed there), so e4m3/bf16 is "MX weights with bf16 activations". Su et al.'s
faithful setting is e4m3/e4m3/half_away/ln_bf16; its in-situ interventions branch a run at a step
with another preset (--config.train.branch_from=runs/mx_e4m3 --config.train.branch_step=600).
Override any field on the command line (--config.precision.mx_grads_for_inputs=bfloat16).
"""
from configs import quickstart
from lm.model.mx_presets import precision_fields


def get_config(arg: str = "e4m3/e4m3"):
    c = quickstart.get_config()
    c.precision.update(precision_fields(arg))
    return c
