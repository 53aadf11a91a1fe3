"""Train a decoder-only LM from a config file.

    python -m lm.train --config=configs/quickstart.py --workdir=runs/quickstart \\
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

from absl import flags, logging

from core import cli
from data.clients import FetchError
from lm.errors import ConfigError
from lm.train import config_flag, distributed
from lm.train.checkpoint import CheckpointWriteError
from lm.train.loop import run

PARSER = cli.parser("python -m lm.train", __doc__)
config_flag.add_config(PARSER, "configs/quickstart.py")
cli.add_path(PARSER, "workdir", required=True, use="a run found there resumes")
PARSER.add_argument("--verbosity", type=int, default=logging.WARNING,
                    help="absl logging: -1 warnings, 0 info, 1 debug and the traceback of an "
                         "error")


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


def _log_at(verbosity: int) -> None:
    """absl's log lines on stderr at `verbosity` (Orbax is chatty at INFO)."""
    flags.FLAGS([PARSER.prog])  # absl's own flags: their defaults (none is on this command line)
    logging.use_absl_handler()
    logging.set_verbosity(verbosity)
    if verbosity < logging.DEBUG:
        logging.get_absl_handler().addFilter(_without_traceback)


@cli.main(ConfigError)
def main(argv) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):  # the loop takes over while it runs
        signal.signal(sig, _stop_now)
    args, config = config_flag.parse(PARSER, argv)
    _log_at(args.verbosity)
    try:
        distributed.initialize()
        run(config, args.workdir)
    except (ConfigError, FileNotFoundError, FetchError, FloatingPointError, OSError) as err:
        if args.verbosity >= logging.DEBUG:
            traceback.print_exc()
        status = cli.fail(str(err), 3 if isinstance(err, FloatingPointError) else 2)
        if isinstance(err, CheckpointWriteError):  # Orbax's writer threads still hold failed
            sys.stdout.flush()                     # writes, each printed again at shutdown
            os._exit(status)
        return status
    return 0
