"""Train a decoder-only LM from a config file.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart \
        --config.optimizer.lr=3e-3

The workdir receives config.json (the resolved config), model.json (shape, parameter counts,
FLOPs per token), metrics.jsonl (see lm/train/metrics_log.py) and checkpoints/ (all named in
lm/train/workdir.py); it may be a gs:// URL (pip install gcsfs). Starting on a workdir that
has checkpoints resumes from the newest good one, bit-identically on the same machine.
SIGTERM / SIGINT finish the current step, save a checkpoint and exit 0 (before the first step:
exit 0, nothing changed). Bad input exits 2 with a one-line message (--verbosity=1 adds the
traceback), a non-finite loss 3.
"""
import os
import signal
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from data.clients import FetchError
from lm.errors import ConfigError
from lm.train import distributed
from lm.train.checkpoint import CheckpointWriteError
from lm.train.config_checks import exit_on_unknown_keys
from lm.train.loop import run

_CONFIG = config_flags.DEFINE_config_file("config", "configs/quickstart.py",
                                          "Config file (a get_config() python file).")
_WORKDIR = flags.DEFINE_string("workdir", None,
                                "Run directory (checkpoints, metrics): a path or a gs:// URL.")


def _stop_now(signum, frame):
    """A signal while the training loop does not own SIGTERM / SIGINT (setting up: data,
    restore, compile) ends the process at once. Exiting is safe there, as a kill -9 is: every
    file is published whole and a preparation resumes. Raising instead could be swallowed where
    the handler happens to run (a finalizer, a library callback), and training would go on."""
    print(f"stopped by {signal.Signals(signum).name} before the first step; nothing was trained "
          "or changed. Rerun the same command to start.", flush=True)
    os._exit(0)


def _without_traceback(record) -> bool:
    """Logs keep their one-line message; the traceback shows with --verbosity=1."""
    record.exc_info, record.exc_text = None, None
    return True


def main(argv) -> None:
    del argv
    for sig in (signal.SIGTERM, signal.SIGINT):  # the loop takes over while it runs
        signal.signal(sig, _stop_now)
    if not flags.FLAGS["verbosity"].present:  # absl would log INFO (orbax is chatty there)
        logging.set_verbosity(logging.WARNING)
        logging.get_absl_handler().addFilter(_without_traceback)
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required, e.g. --workdir=runs/quickstart")
    try:
        distributed.initialize()
        run(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, FileNotFoundError, FetchError, FloatingPointError, OSError) as err:
        if flags.FLAGS["verbosity"].value >= logging.DEBUG:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr, flush=True)
        if isinstance(err, CheckpointWriteError):  # Orbax's writer threads still hold failed
            sys.stdout.flush()                     # writes, each printed again at shutdown
            os._exit(2)
        sys.exit(3 if isinstance(err, FloatingPointError) else 2)


def entry_point() -> None:
    exit_on_unknown_keys()
    app.run(main)
