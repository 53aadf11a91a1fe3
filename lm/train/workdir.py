"""A run's directory: the name of every file that lm.train and lm.sweep keep in it, and how the
JSON ones are written and checked.

    WORKDIR/config.json        the resolved config (a resume with another config adds
                               config.<time>.json beside it)
    WORKDIR/model.json         the model's shape fields, parameter counts and FLOPs per token
    WORKDIR/metrics.jsonl      one row per logged step (lm/train/metrics_log.py)
    WORKDIR/checkpoints/       Orbax checkpoints, one folder per step (lm/train/checkpoint.py)
    WORKDIR/checkpoints_corrupt/  checkpoints that failed to restore, moved aside
    WORKDIR/train.log          the output of a run that executes away from the console
    WORKDIR/sweep_run.json     lm.sweep's record of the run's latest attempt

Every file is written whole or not at all (a temporary file and a rename, `data.atomic`), so a
kill never leaves a half-written one behind.
"""
import json
import os
import time

import jax.numpy as jnp

from data import atomic
from lm.errors import ConfigError
from lm.model import ModelConfig

CONFIG = "config.json"
MODEL = "model.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
CORRUPT_CHECKPOINTS = "checkpoints_corrupt"
TRAIN_LOG = "train.log"
SWEEP_RECORD = "sweep_run.json"
RUN_MARKERS = (METRICS, CONFIG, CHECKPOINTS)  # what makes a directory a run's


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` all or nothing."""
    atomic.write_file(path, text.encode())


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=2))


def read_json(path: str) -> dict:
    """The JSON object at `path`, {} if there is none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_run_files(workdir: str, config, record: dict) -> None:
    """config.json and model.json; a resume with a changed config keeps the first config.json
    and writes the new one beside it, so what each leg of the run used stays on record."""
    resolved = json.loads(config.to_json())
    path = os.path.join(workdir, CONFIG)
    if os.path.exists(path) and read_json(path) != resolved:
        path = os.path.join(workdir, f"config.{time.strftime('%Y%m%d-%H%M%S')}.json")
    write_json(path, resolved)
    write_json(os.path.join(workdir, MODEL), record)


def model_record(model_cfg: ModelConfig, info: dict) -> dict:
    """What model.json holds: the resolved model config and its size figures."""
    return {"model": _shape_fields(model_cfg), "dtype": str(jnp.dtype(model_cfg.dtype)), **info}


def check_model(workdir: str, model_cfg: ModelConfig) -> None:
    """A workdir that already holds a run must hold one of the same model shape."""
    path = os.path.join(workdir, MODEL)
    if not os.path.exists(path):
        return
    previous = read_json(path)["model"]
    previous.setdefault("norm_affine", True)  # runs from before these fields existed
    previous.setdefault("scan_layers", False)
    current = _shape_fields(model_cfg)
    diff = {k: (previous.get(k), v) for k, v in current.items() if previous.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"workdir {workdir} holds a run with a different model shape "
                          f"({changes}); use a new --workdir, or the model config of that run "
                          f"(see {path})")


def _shape_fields(model_cfg: ModelConfig) -> dict:
    """The model fields that fix parameter shapes and meaning (how it is computed may change on
    resume: the dtype, MX formats, attention kernel and rematerialization)."""
    fields = dict(vars(model_cfg))
    for computation in ("dtype", "mx", "mx_layers", "attention", "remat"):
        fields.pop(computation)
    fields["norm_affine"] = model_cfg.norm_affine != "none"  # float32 <-> bfloat16 may change
    return fields
