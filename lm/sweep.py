"""Run a sweep: every run of a sweep file in its own workdir under one root.

    python -m lm.sweep --config=configs/sweeps/tiny.py --root=runs/sweeps/tiny
    python -m lm.sweep --config=configs/sweeps/optimizers.py --root=runs/sweeps/optimizers --dry-run
    python -m lm.sweep --config=... --root=... --processes=2        # 2 local runs at once
    python -m lm.sweep --config=... --root=... --executor=ray --address=auto --gpus-per-run=1

A sweep file defines `get_sweep()` returning an `lm.sweep_spec.Sweep` (configs/sweeps/ has
examples). Each run trains with lm.train in ROOT/<name>, its name made of the values that vary
across the sweep (`size=d64_l2,optimizer=adamw,lr=0.003`). Running the sweep again skips
finished runs and resumes interrupted ones from their checkpoints. A run that crashes (failed)
or whose loss turns non-finite (diverged) is recorded and the sweep goes on; the next invocation
retries failed runs, and diverged ones only with --retry-diverged (they would diverge again).
SIGINT / SIGTERM stop the sweep: running runs save a checkpoint, no new run starts.

ROOT/results.csv (one row per run, see lm/sweep_results.py) is rewritten as each run ends, and
ROOT/best_lr.csv holds the best learning rate of each (size, optimizer, ...) grid. The root is
also a directory of runs for `scaling` (scaling.runs.find_run_dirs). Bad input (two runs with
one name, an unknown optimizer, an empty axis, a root holding another sweep's runs) stops the
sweep before any training. Exit status: 0 when no run failed (diverged runs are results of an
lr grid), 1 when some run failed, 2 for bad input.
"""
import argparse
import contextlib
import math
import os
import runpy
import signal
import sys
import threading

from absl import logging
from tqdm import tqdm

from lm.sweep_executors import InProcess, LocalProcesses, RayCluster, Task
from lm.sweep_results import (best_learning_rates, format_table, result_row, summary,
                              write_best, write_results)
from lm.sweep_spec import Run, Sweep, SweepError, expand, ordered_keys, run_model_info
from lm.sweep_state import Progress, claim_root, progress, write_record

# --dry-run's time estimate. A 2-core x86-64 CPU runs AdamW train steps of the quickstart
# ladder at 3e10 (d64_l2) to 7e10 (d128_l4) FLOP/s, and a run spends ~6 s on start-up and
# compilation. Step time relative to AdamW's, from benchmarks/optimizers.py (README.md); the
# others are within 10% of AdamW.
DEFAULT_FLOPS_PER_SECOND = 3e10
DEFAULT_SECONDS_PER_RUN = 6.0
OPTIMIZER_STEP_COST = {"soap": 1.94, "shampoo": 1.73, "muon": 2.03}


def load_sweep(path: str) -> Sweep:
    if not os.path.exists(path):
        raise SweepError(f"sweep file {path!r} does not exist; e.g. "
                         "--config=configs/sweeps/tiny.py")
    get_sweep = runpy.run_path(path).get("get_sweep")
    if get_sweep is None:
        raise SweepError(f"{path} defines no get_sweep(); a sweep file returns an "
                         "lm.sweep_spec.Sweep from get_sweep() (see configs/sweeps/tiny.py)")
    sweep = get_sweep()
    if not isinstance(sweep, Sweep):
        raise SweepError(f"{path}: get_sweep() returned a {type(sweep).__name__}, not an "
                         "lm.sweep_spec.Sweep")
    return sweep


def run_sweep(sweep: Sweep, root: str, *, name: str, config_path: str, executor=None,
              dry_run: bool = False, retry_diverged: bool = False,
              flops_per_second: float = DEFAULT_FLOPS_PER_SECOND,
              seconds_per_run: float = DEFAULT_SECONDS_PER_RUN) -> int:
    """Runs (or, with `dry_run`, lists) the sweep's runs into `root`; returns the exit status.
    Every check happens before the first run starts; SweepError reports a bad sweep."""
    runs = expand(sweep)
    root = os.path.abspath(root)
    for stale in claim_root(root, name, config_path, runs, write=not dry_run):
        print(f"warning: {os.path.join(root, stale)} is not a run of this sweep (left by an "
              "earlier version of it?); results.csv leaves it out", file=sys.stderr)
    workdirs = {run.name: os.path.join(root, run.name) for run in runs}
    before = {run.name: progress(workdirs[run.name], run.config.train.steps) for run in runs}
    todo = [run for run in runs if _needs_training(before[run.name], retry_diverged)]
    skipped = {run.name for run in runs} - {run.name for run in todo}
    if dry_run:
        print(plan_report(runs, before, skipped, name, root, flops_per_second, seconds_per_run))
        return 0

    axes = ordered_keys([run.overrides for run in runs])
    rows = {run.name: result_row(run, workdirs[run.name], before[run.name],
                                 "skipped" if run.name in skipped else "") for run in runs}
    results_path = os.path.join(root, "results.csv")
    write_results(results_path, list(rows.values()), axes)
    by_name = {run.name: run for run in runs}
    tasks = [Task(run.name, run.config, workdirs[run.name]) for run in todo]
    stop = threading.Event()
    with _stop_on_signals(stop), tqdm(total=len(runs), initial=len(skipped),
                                      desc="sweep", unit="run", file=sys.stderr,
                                      dynamic_ncols=True) as bar:
        for task, outcome in (executor or InProcess()).run(tasks, stop):
            write_record(task.workdir, outcome)
            run = by_name[task.name]
            after = progress(task.workdir, run.config.train.steps)
            action = "resumed" if before[task.name].checkpoint else "trained"
            rows[task.name] = result_row(run, task.workdir, after, action)
            write_results(results_path, list(rows.values()), axes)
            bar.update(1)
            tqdm.write(_outcome_line(task.name, rows[task.name]))
            if outcome["status"] == "stopped":
                stop.set()

    table = list(rows.values())
    group_keys = [k for k in axes if k != "lr"]
    best = best_learning_rates(table, group_keys) if "lr" in axes else []
    if all(len(entry["grid"].split()) == 1 for entry in best):
        best = []  # one lr per group (lr varies with another axis): nothing to select
    if best:
        write_best(os.path.join(root, "best_lr.csv"), best, group_keys)
    print(summary(table, best, group_keys, root))
    return 1 if any(row["status"] == "failed" for row in table) else 0


def plan_report(runs: list[Run], before: dict, skipped: set[str], name: str, root: str,
                flops_per_second: float, seconds_per_run: float) -> str:
    """The --dry-run listing: each run's size, tokens, training FLOPs and what is left to do,
    with a wall-time estimate: training FLOPs (times the optimizer's OPTIMIZER_STEP_COST) and
    evaluation FLOPs at `flops_per_second`, plus `seconds_per_run` (start-up, compilation)."""
    lines, total_flops, total_s = [], 0, 0.0
    for run in runs:
        c, state, to_train = run.config, before[run.name], run.name not in skipped
        info = run_model_info(c)
        tokens = c.train.steps * c.train.batch_size * c.data.seq_len
        flops = tokens * info["flops_per_token"]
        evals = math.ceil(c.train.steps / c.train.eval_every) * len(c.data.eval_corpora)
        eval_flops = (evals * c.data.eval_batches * c.data.eval_batch_size * c.data.seq_len
                      * info["flops_per_token"] / 3)  # forward only: a third of training
        left = (c.train.steps - state.checkpoint) / c.train.steps if to_train else 0.0
        step_cost = OPTIMIZER_STEP_COST.get(c.optimizer.name, 1.0)
        seconds = (left * (step_cost * flops + eval_flops) / flops_per_second + seconds_per_run
                   if to_train else 0.0)
        total_flops, total_s = total_flops + left * flops, total_s + seconds
        lines.append([run.name, _todo_label(to_train, state),
                      f"{info['params/total']:,}", f"{info['params/non_embedding']:,}",
                      f"{c.train.steps:,}", f"{tokens:,}", f"{flops:.2e}",
                      _duration(seconds) if to_train else "-"])
    resumes = sum(1 for run in runs if run.name not in skipped and before[run.name].checkpoint)
    header = (f"sweep {name}: {len(runs)} runs in {root}: "
              f"{len(runs) - len(skipped) - resumes} to train, {resumes} to resume, "
              f"{len(skipped)} to skip")
    table = format_table(["run", "to do", "params", "non-embedding", "steps", "tokens",
                          "train FLOPs", "est. time"], lines)
    total = (f"total: {total_flops:.2e} training FLOPs to go, about {_duration(total_s)} in one "
             f"process at {flops_per_second:.1e} FLOP/s + {seconds_per_run:g} s per run "
             "(--flops-per-second and --seconds-per-run calibrate this for other machines)")
    return "\n".join([header, table, total])


def _needs_training(state: Progress, retry_diverged: bool) -> bool:
    return not state.finished and (retry_diverged or state.status != "diverged")


def _todo_label(needs_training: bool, state: Progress) -> str:
    if not needs_training:
        return f"skip ({state.status})"
    return f"resume at {state.checkpoint}" if state.checkpoint else "train"


def _outcome_line(name: str, row: dict) -> str:
    if row["status"] == "finished":
        loss = f", val loss {row['val_loss']:.4f}" if "val_loss" in row else ""
        return f"{name}: finished in {row.get('wall_s', 0):.0f} s{loss}"
    first_line = row.get("error", "").splitlines()[0][:200] if row.get("error") else ""
    return f"{name}: {row['status']}: {first_line}"


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s" if minutes else f"{s}s"


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT / SIGTERM set `stop` (the executors then start nothing and stop what runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if not stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping the sweep; running runs save a "
                  "checkpoint. Rerun the same command to go on.", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


if __name__ == "__main__":
    sys.exit(main())
