"""Prepare, or check, everything a run config needs under its data root: its tokenizer and each
training and validation source, prepared as `python -m lm.train` would prepare them on first
use, but before the run and in one place (e.g. once, for every host of a TPU pod).

    python -m lm.train.prepare_data --config=configs/quickstart.py \\
        --config.data.root=gs://BUCKET/data --check
    python -m lm.train.prepare_data --config=configs/quickstart.py \\
        --config.data.root=gs://BUCKET/data

The config and its --config.KEY=VALUE overrides are the run's (`data.root` is the data root:
"" means $OPTISCALE_DATA_DIR, else ~/.cache/optiscale). With --check, nothing is prepared,
fetched or trained, and nothing is compiled: each thing the run reads is listed as ok or
MISSING, with the `python -m data.prepare` commands (and this command without --check) that
prepare what is missing; the exit status is 1 when something is missing, 0 when nothing is.
Without --check, whatever is missing is prepared, then the same list is printed. On a gs://
root the registered corpora are fetched to a local cache ($OPTISCALE_DATA_DIR when that is a
local path, else ~/.cache/optiscale) and only the tokenizer and the prepared arrays go to the
bucket. launch_tpu.sh --data-root runs the check before it creates anything, and with
--prepare-data runs this command on worker 0 before the run starts (data/needs.py does the
work).
"""
import shlex
import sys

from core import cli
from data import dataset, needs
from data.clients import FetchError
from lm.train import config_flag

PARSER = cli.parser("python -m lm.train.prepare_data", __doc__)
config_flag.add_config(PARSER, "configs/quickstart.py")
PARSER.add_argument("--check", action="store_true",
                    help="only list what is prepared and what is missing (exit status 1 if "
                         "anything is), preparing nothing")


@cli.main(ValueError, FileNotFoundError, FetchError)  # ConfigError is a ValueError
def main(argv) -> int:
    args, config = config_flag.parse(PARSER, argv)
    root = config.data.root or dataset.default_root()
    again = shlex.join([*PARSER.prog.split(), *(a for a in argv if a not in ("--check",))])
    if not args.check:
        for prepared in needs.prepare_all(config.data, root).values():
            print(f"{prepared.path}: {prepared.train.num_tokens:,} train and "
                  f"{prepared.val.num_tokens:,} validation tokens", flush=True)
    report = needs.check(config.data, root)
    print(report.text(again), flush=True)
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
