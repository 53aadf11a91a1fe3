"""The main job: an optimizer-comparison scaling study, end to end, into one directory.

    python -m lm.study --out=runs/study                          # tiny: ~14 min on 2 CPU cores
    python -m lm.study --out=runs/study --dry-run                # runs, FLOPs, time estimate
    python -m lm.study --out=runs/study --optimizers=adamw,soap,simplified_ademamix,lion
    python -m lm.study --out=runs/study_small --preset=small     # hours on a CPU
    python -m lm.study --out=/mnt/shared/study --preset=paper    # writes TPU pod launch scripts

Phases, each an lm.sweep root under DIR (configs/study.py sizes them):
1. DIR/prose: model sizes x optimizers x each optimizer's lr grid on the prose corpus, evaluated
   on prose and code; the best lr of each (size, optimizer) is selected on prose validation loss
   (DIR/prose/best_lr.csv), as the seed papers tune every optimizer before comparing.
2. DIR/followup: AdamW at its best lr on less and more data (its loss-vs-data law, for the
   effective-data speedup), and the code ladder: AdamW at its best prose lr, trained on code.
3. The fits, each a `python -m scaling.fit` command writing into DIR/fits, and DIR/report.md
   with tables and plots (lm/study/report.py).
Running the same command again skips finished runs, resumes interrupted ones and refits. With
--launch=tpu (the paper preset's default) a phase with unfinished runs is not trained here:
DIR/launch_<phase>.sh gets one launch_tpu.sh command per run, and the study goes on once the
runs are finished in DIR (a shared directory the TPU workers write to).
"""
import argparse
import sys

from absl import logging

from configs import study as presets
from lm.errors import SweepError
from lm.study.phases import run_study


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm.study",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the study's directory")
    parser.add_argument("--preset", default="tiny", choices=presets.PRESETS)
    parser.add_argument("--optimizers", default="",
                        help="comma-separated registry names (default: the preset's, "
                             f"{','.join(presets.OPTIMIZERS)}); adamw is the baseline")
    parser.add_argument("--lr-grid", action="append", default=[], metavar="NAME:LR,LR,...",
                        help="an optimizer's lr grid (repeatable); configs/study.py has defaults")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs, their FLOPs and estimated time; train nothing")
    parser.add_argument("--launch", choices=("here", "tpu"), default=None,
                        help="here: train the runs; tpu: write launch_tpu.sh scripts (default: "
                             "tpu for the paper preset)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--processes", type=int, default=0,
                        help="local runs at once (default: the preset's, at most the cores)")
    parser.add_argument("--address", default="", help="ray: the cluster (see lm.sweep)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus-per-run", type=float, default=0.0)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = argv
    args.launch = args.launch or ("tpu" if args.preset == "paper" else "here")
    logging.set_verbosity(logging.WARNING)
    if args.processes < 0:
        print(f"error: --processes={args.processes} must be at least 1", file=sys.stderr)
        return 2
    try:
        return run_study(args)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2

