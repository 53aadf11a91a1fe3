"""The main job: an optimizer comparison, tuned and measured as the papers do, into one directory.

    python -m lm.study --out=runs/study                          # tiny: <= 15 min on 2 CPU cores
    python -m lm.study --out=runs/study --dry-run                # runs, FLOPs, time estimate
    python -m lm.study --out=runs/study --optimizers=adamw,soap
    python -m lm.study --out=runs/compare --preset=compare       # the full protocol: hours
    python -m lm.study --out=runs/cbs --preset=cbs               # critical batch size
    python -m lm.study --out=/mnt/shared/study --preset=paper    # writes TPU pod launch scripts

Phases (configs/study.py sizes them; lm/study/phases.py builds them):
1. DIR/tune/<size>: every optimizer tuned by coordinate descent over its search space (lr, b1,
   b2, weight decay, warmup, eps, clipping and its own knobs), each move required to beat the
   seed noise of AdamW's start point (lm/study/tuning.py, Wen et al. 2025).
2. DIR/final: the other sizes with the lr re-tuned around the tuned point, more seeds of every
   tuned point, AdamW at other data budgets with the lr re-tuned at each, the other optimizers
   annealed on shortened runs, and AdamW on the code corpus.
3. DIR/report.md: final losses with seed intervals, effective-data speedups inside AdamW's
   measured budgets (else labelled extrapolations), steps to AdamW's loss from annealed runs,
   step times measured alone, compute laws and loss-to-loss fits resampled by run, the regime
   and the claims the numbers support (lm/study/report.py).
Running the same command again skips finished runs, resumes interrupted ones, replays the
searches and redoes the analysis. With --launch=tpu (the paper preset's default) a phase with
unfinished runs is not trained here: DIR/launch_<phase>.sh gets one launch_tpu.sh command per
run, and the study goes on once they are finished in DIR (a shared directory).
The cbs preset is its own job: DIR/cbs and DIR/report.md (lm/study/cbs.py).
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
    parser.add_argument("--grid", action="append", default=[], metavar="NAME:KEY:V,V,...",
                        help="replace one grid of an optimizer's search space (repeatable), "
                             "e.g. soap:lr:3e-3,1e-2,3e-2; configs/study.py SEARCH has them")
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

