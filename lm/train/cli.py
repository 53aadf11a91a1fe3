"""Train a decoder-only LM from a config file.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart \
        --config.optimizer.lr=3e-3

The workdir receives config.json (the resolved config), model.json (shape, parameter counts,
FLOPs per token), metrics.jsonl (see lm/train/metrics_log.py) and checkpoints/ (all named in
lm/train/workdir.py); it may be a gs:// URL (pip install gcsfs). Starting on a workdir that
has checkpoints resumes from the newest good one, bit-identically on the same machine.
SIGTERM / SIGINT finish the current step, save a checkpoint and exit 0. Bad input exits 2 with
a message, a non-finite loss 3.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from data.clients import FetchError
from lm.errors import ConfigError
from lm.train import distributed
from lm.train.config_checks import exit_on_unknown_keys
from lm.train.loop import run

_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py",
                                          "Config file (a get_config() python file).")
_WORKDIR = flags.DEFINE_string("workdir", None,
                                "Run directory (checkpoints, metrics): a path or a gs:// URL.")


def main(argv) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:  # absl would log INFO (orbax is chatty there)
        logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required, e.g. --workdir=runs/quickstart")
    distributed.initialize()
    try:
        run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, FileNotFoundError, FetchError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(3 if isinstance(err, FloatingPointError) else 2)


def entry_point() -> None:
    exit_on_unknown_keys()
    app.run(main)
