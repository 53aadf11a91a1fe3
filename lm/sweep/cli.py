"""Run a sweep: every run of a sweep file in its own workdir under one root.

    python -m lm.sweep --sweep=configs/sweeps/tiny.py --runs_dir=runs/sweeps/tiny
    python -m lm.sweep --sweep=configs/sweeps/optimizers.py --runs_dir=runs/sweeps/opt --dry_run
    python -m lm.sweep --sweep=... --runs_dir=... --processes=2     # 2 local runs at once
    python -m lm.sweep --sweep=... --runs_dir=... --executor=ray --address=auto --gpus_per_run=1
    python -m lm.sweep --sweep=... --runs_dir=/shared/... --executor=slurm --slurm_partition=gpu

--sweep was --config and --runs_dir was --root: both spellings still work.

A sweep file defines `get_sweep()` returning an `lm.sweep.spec.Sweep` (configs/sweeps/ has
examples). Each run trains with lm.train in RUNS_DIR/<name>, its name made of the values that
vary across the sweep (`size=d64_l2,optimizer=adamw,lr=0.003`). Running the sweep again skips
finished runs and resumes interrupted ones from their checkpoints. A run that crashes (failed)
or whose loss turns non-finite (diverged) is recorded and the sweep goes on; the next invocation
retries failed runs, and diverged ones only with --retry_diverged (they would diverge again).
SIGINT / SIGTERM stop the sweep: running runs save a checkpoint, no new run starts.
--executor=slurm submits each run as a SLURM job (or, with --slurm_array, one job array), requeued
from its checkpoint on preemption or at its time limit (lm/sweep/slurm.py); with --dry_run it
prints the sbatch script too.
`--import=MODULE` imports a module of your own first (an optimizer it registers can be swept;
core/user_modules.py), and every run imports it too (config.train.imports).

RUNS_DIR/results.csv (one row per run, see lm/sweep/results.py) is rewritten as each run ends,
and RUNS_DIR/best_lr.csv holds the best learning rate of each (size, optimizer, ...) grid.
RUNS_DIR is also a directory of runs for `scaling` (scaling.runs.find_run_dirs). Bad input (two
runs with one name, an unknown optimizer, an empty axis, a RUNS_DIR holding another sweep's runs)
stops the sweep before any training. Exit status: 0 when no run failed (diverged runs are results
of an lr grid), 1 when some run failed, 2 for bad input.
"""
import os

from absl import logging

from core import cli, user_modules
from lm.errors import SweepError
from lm.sweep import slurm
from lm.sweep.executors import InProcess, LocalProcesses, RayCluster
from lm.sweep.runner import (
    DEFAULT_FLOPS_PER_SECOND,
    DEFAULT_SECONDS_PER_RUN,
    load_sweep,
    run_sweep,
)
from lm.train.config_flag import import_into

PARSER = cli.parser("python -m lm.sweep", __doc__)
PARSER.add_argument("--sweep", required=True, old=("--config",), metavar="FILE",
                    help="sweep file, configs/sweeps/NAME.py")
cli.add_path(PARSER, "runs_dir", required=True, old=("--root",), use="the sweep's runs")
PARSER.add_argument("--dry_run", action="store_true",
                    help="list the runs, their FLOPs and estimated time; train nothing")
PARSER.add_argument("--executor", choices=("local", "ray", "slurm"), default="local",
                    help="where runs train: local processes, a Ray cluster or SLURM jobs "
                         "(the --slurm_* flags)")
PARSER.add_argument("--processes", type=int, default=1,
                    help="local: runs at once (1: one after another, in this process)")
PARSER.add_argument("--address", default="",
                    help="ray: the cluster (auto, host:port, ray://host:port; local: a new local "
                         "instance; empty: RAY_ADDRESS, else a new local instance)")
PARSER.add_argument("--cpus_per_run", type=float, default=1.0, help="ray: CPUs per run")
PARSER.add_argument("--gpus_per_run", type=float, default=0.0, help="ray: GPUs per run")
PARSER.add_argument("--retry_diverged", action="store_true",
                    help="train runs that diverged before again (e.g. after a fix)")
PARSER.add_argument("--flops_per_second", type=float, default=DEFAULT_FLOPS_PER_SECOND,
                    help="--dry_run's time estimate: training FLOP/s of one process")
PARSER.add_argument("--seconds_per_run", type=float, default=DEFAULT_SECONDS_PER_RUN,
                    help="--dry_run's time estimate: start-up and compilation per run")
slurm.add_flags(PARSER)
user_modules.add_flag(PARSER)


@cli.main(SweepError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    if args.processes < 1:
        raise cli.UsageError(f"--processes={args.processes} must be at least 1")
    slurm.check_flags(PARSER, args)
    if args.executor == "ray":
        executor = RayCluster(args.address, args.cpus_per_run, args.gpus_per_run)
    elif args.executor == "slurm":
        executor = slurm.from_args(args)
    else:
        executor = LocalProcesses(args.processes) if args.processes > 1 else InProcess()
    user_modules.import_modules(args.imports)
    sweep = load_sweep(args.sweep)
    import_into(sweep.base, args.imports)
    return run_sweep(sweep, args.runs_dir, name=os.path.splitext(os.path.basename(args.sweep))[0],
                     config_path=args.sweep, executor=executor, dry_run=args.dry_run,
                     retry_diverged=args.retry_diverged, flops_per_second=args.flops_per_second,
                     seconds_per_run=args.seconds_per_run)
