"""Defaults of every optiscale config, assembled from each subsystem's definitions (model:
lm/model/settings.py, data: data/settings.py, optimizer and schedule: optim/settings.py and
optim/hparams/, train, mesh and precision: lm/train/settings.py). `python -m configs.help`
lists every field with its default and doc.

Use directly (`--config=configs/base.py`, or `configs/base.py:d256_l4` for a ladder size) or
from another config file that edits `get_config()`. Every field can be overridden on the command
line: `--config.optimizer.lr=1e-3`.
"""
import ml_collections

from lm.train.settings import run_config


def get_config(size: str = "") -> ml_collections.ConfigDict:
    return run_config(size)
