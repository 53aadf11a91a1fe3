"""Run a sweep: every run of a sweep file in its own workdir under one root.

    python -m lm.sweep --config=configs/sweeps/tiny.py --root=runs/sweeps/tiny
    python -m lm.sweep --config=configs/sweeps/optimizers.py --root=runs/sweeps/optimizers --dry-run
    python -m lm.sweep --config=... --root=... --processes=2        # 2 local runs at once
    python -m lm.sweep --config=... --root=... --executor=ray --address=auto --gpus-per-run=1

A sweep file defines `get_sweep()` returning an `lm.sweep.spec.Sweep` (configs/sweeps/ has
examples). Each run trains with lm.train in ROOT/<name>, its name made of the values that vary
across the sweep (`size=d64_l2,optimizer=adamw,lr=0.003`). Running the sweep again skips
finished runs and resumes interrupted ones from their checkpoints. A run that crashes (failed)
or whose loss turns non-finite (diverged) is recorded and the sweep goes on; the next invocation
retries failed runs, and diverged ones only with --retry-diverged (they would diverge again).
SIGINT / SIGTERM stop the sweep: running runs save a checkpoint, no new run starts.

ROOT/results.csv (one row per run, see lm/sweep/results.py) is rewritten as each run ends, and
ROOT/best_lr.csv holds the best learning rate of each (size, optimizer, ...) grid. The root is
also a directory of runs for `scaling` (scaling.runs.find_run_dirs). Bad input (two runs with
one name, an unknown optimizer, an empty axis, a root holding another sweep's runs) stops the
sweep before any training. Exit status: 0 when no run failed (diverged runs are results of an
lr grid), 1 when some run failed, 2 for bad input.
"""
import argparse
import os
import sys

from absl import logging

from lm.errors import SweepError
from lm.sweep.executors import InProcess, LocalProcesses, RayCluster
from lm.sweep.runner import (
    DEFAULT_FLOPS_PER_SECOND,
    DEFAULT_SECONDS_PER_RUN,
    load_sweep,
    run_sweep,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm.sweep",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="sweep file, configs/sweeps/NAME.py")
    parser.add_argument("--root", required=True, help="directory of the sweep's runs")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs, their FLOPs and estimated time; train nothing")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--processes", type=int, default=1,
                        help="local: runs at once (1: one after another, in this process)")
    parser.add_argument("--address", default="",
                        help="ray: the cluster (auto, host:port, ray://host:port; local: a new "
                        "local instance; empty: RAY_ADDRESS, else a new local instance)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs per run")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="ray: GPUs per run")
    parser.add_argument("--retry-diverged", action="store_true",
                        help="train runs that diverged before again (e.g. after a fix)")
    parser.add_argument("--flops-per-second", type=float, default=DEFAULT_FLOPS_PER_SECOND,
                        help="--dry-run's time estimate: training FLOP/s of one process")
    parser.add_argument("--seconds-per-run", type=float, default=DEFAULT_SECONDS_PER_RUN,
                        help="--dry-run's time estimate: start-up and compilation per run")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    if args.processes < 1:
        print(f"error: --processes={args.processes} must be at least 1", file=sys.stderr)
        return 2
    if args.executor == "ray":
        executor = RayCluster(args.address, args.cpus_per_run, args.gpus_per_run)
    else:
        executor = LocalProcesses(args.processes) if args.processes > 1 else InProcess()
    try:
        sweep = load_sweep(args.config)
        return run_sweep(sweep, args.root, name=os.path.splitext(os.path.basename(args.config))[0],
                         config_path=args.config, executor=executor, dry_run=args.dry_run,
                         retry_diverged=args.retry_diverged,
                         flops_per_second=args.flops_per_second,
                         seconds_per_run=args.seconds_per_run)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
