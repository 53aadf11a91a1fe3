"""Runs a sweep: every run of a sweep file trains with lm.train in its own workdir, ROOT/<name>.

`run_sweep` checks the whole sweep first (names, optimizers, axes, the root's owner), skips
finished runs, resumes interrupted ones from their checkpoints, hands the rest to an executor
(lm/sweep/executors.py) and keeps ROOT/results.csv and ROOT/best_lr.csv current
(lm/sweep/results.py). `plan_report` is --dry_run's listing with FLOPs and a time estimate.
"""
import contextlib
import math
import os
import runpy
import signal
import sys
import threading

from tqdm import tqdm

from core import cli
from lm.errors import SweepError, as_sweep_error
from lm.sweep.executors import InProcess, Task
from lm.sweep.results import (
    best_learning_rates,
    format_table,
    result_row,
    summary,
    write_best,
    write_results,
)
from lm.sweep.spec import Run, Sweep, expand, ordered_keys, run_model_info
from lm.sweep.state import Progress, claim_root, progress, write_record
from lm.train import workdir as run_files

# --dry_run's time estimate. A 2-core x86-64 CPU runs AdamW train steps of the quickstart
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
                         "lm.sweep.spec.Sweep from get_sweep() (see configs/sweeps/tiny.py)")
    sweep = get_sweep()
    if not isinstance(sweep, Sweep):
        raise SweepError(f"{path}: get_sweep() returned a {type(sweep).__name__}, not an "
                         "lm.sweep.spec.Sweep")
    return sweep


def run_sweep(sweep: Sweep, root: str, *, name: str, config_path: str, executor=None,
              dry_run: bool = False, retry_diverged: bool = False,
              flops_per_second: float = DEFAULT_FLOPS_PER_SECOND,
              seconds_per_run: float = DEFAULT_SECONDS_PER_RUN, only: set | None = None,
              select_lr: bool = True, stop: threading.Event | None = None) -> int:
    """Runs (or, with `dry_run`, lists) the sweep's runs into `root`; returns the exit status.
    Every check happens before the first run starts; SweepError reports a bad sweep.
    `only`: names of the runs to train (the others are listed and left as they are, e.g. a
    tuner's earlier failed runs); `select_lr`: write ROOT/best_lr.csv per group of the other
    axes (off where the caller selects, as lm.study's tuner does); `stop`: the caller's stop
    event, which it sets on signals (lm.study's, over its phases); else this sweep stops on
    SIGINT / SIGTERM. Unless `dry_run`, the root is held (`owned`) while the sweep runs."""
    runs = expand(sweep)
    with as_sweep_error("--runs_dir: "):
        run_files.check_filesystems(root)
        run_files.check_directory(root, "--runs_dir")
    root = run_files.absolute(root)
    with contextlib.nullcontext() if dry_run else owned(root, "sweep"):
        return _run(sweep, runs, root, name, config_path, executor, dry_run, retry_diverged,
                    flops_per_second, seconds_per_run, only, select_lr, stop)


def _run(sweep, runs, root, name, config_path, executor, dry_run, retry_diverged,
         flops_per_second, seconds_per_run, only, select_lr, stop) -> int:
    """run_sweep's work, once the root is checked and (unless `dry_run`) held."""
    for stale in claim_root(root, name, config_path, runs, write=not dry_run):
        print(f"warning: {os.path.join(root, stale)} is not a run of this sweep (left by an "
              "earlier version of it?); results.csv leaves it out", file=sys.stderr)
    workdirs = {run.name: os.path.join(root, run.name) for run in runs}
    before = {run.name: progress(workdirs[run.name], run.config.train.steps) for run in runs}
    todo = [run for run in runs if _needs_training(before[run.name], retry_diverged)
            and (only is None or run.name in only)]
    skipped = {run.name for run in runs} - {run.name for run in todo}
    tasks = [Task(run.name, run.config, workdirs[run.name]) for run in todo]
    if dry_run:
        print(plan_report(runs, before, skipped, name, root, flops_per_second, seconds_per_run))
        if tasks and hasattr(executor, "describe"):  # what it would submit (slurm: sbatch)
            print(executor.describe(tasks))
        return 0

    axes = ordered_keys([run.overrides for run in runs])
    rows = {run.name: result_row(run, workdirs[run.name], before[run.name],
                                 "skipped" if run.name in skipped else "") for run in runs}
    results_path = os.path.join(root, "results.csv")
    write_results(results_path, list(rows.values()), axes)
    by_name = {run.name: run for run in runs}
    signals = contextlib.nullcontext() if stop else stop_on_signals(stop := threading.Event())
    with signals, cli.progress(total=len(runs), initial=len(skipped), desc=name,
                               unit="run") as bar:
        for task, outcome in (executor or InProcess()).run(tasks, stop):
            if outcome["status"] != "busy":  # another trainer's run is not this one's result
                write_record(task.workdir, outcome)
            run = by_name[task.name]
            after = progress(task.workdir, run.config.train.steps)
            action = _action(outcome, before[task.name])
            rows[task.name] = result_row(run, task.workdir, after, action)
            write_results(results_path, list(rows.values()), axes)
            bar.update(1)
            tqdm.write(f"{task.name}: left as it is: {outcome['error']}" if action == "busy"
                       else _outcome_line(task.name, rows[task.name]))
            if outcome["status"] == "stopped":
                stop.set()

    table = list(rows.values())
    group_keys = [k for k in axes if k != "lr"]
    best = best_learning_rates(table, group_keys) if "lr" in axes and select_lr else []
    if all(len(entry["grid"].split()) == 1 for entry in best):
        best = []  # one lr per group (lr varies with another axis): nothing to select
    if best:
        write_best(os.path.join(root, "best_lr.csv"), best, group_keys)
    print(summary(table, best, group_keys, root))
    return 1 if any(row["status"] == "failed" for row in table) else 0


def plan_report(runs: list[Run], before: dict, skipped: set[str], name: str, root: str,
                flops_per_second: float, seconds_per_run: float) -> str:
    """The --dry_run listing: each run's size, tokens, training FLOPs and what is left to do,
    with a wall-time estimate: training FLOPs (times the optimizer's OPTIMIZER_STEP_COST) and
    evaluation FLOPs at `flops_per_second`, plus `seconds_per_run` (start-up, compilation)."""
    lines, total_flops, total_s = [], 0, 0.0
    for run in runs:
        c, state, to_train = run.config, before[run.name], run.name not in skipped
        info = run_model_info(c)
        tokens = c.train.steps * c.train.batch_size * c.data.seq_len
        flops = tokens * info["flops_per_token"]
        left = (c.train.steps - state.checkpoint) / c.train.steps if to_train else 0.0
        seconds = (estimate_seconds(c, left, flops_per_second, seconds_per_run)
                   if to_train else 0.0)
        total_flops, total_s = total_flops + left * flops, total_s + seconds
        lines.append([run.name, _todo_label(to_train, state),
                      f"{info['params/total']:,}", f"{info['params/non_embedding']:,}",
                      f"{c.train.steps:,}", f"{tokens:,}", f"{flops:.2e}",
                      duration(seconds) if to_train else "-"])
    resumes = sum(1 for run in runs if run.name not in skipped and before[run.name].checkpoint)
    header = (f"sweep {name}: {len(runs)} runs in {root}: "
              f"{len(runs) - len(skipped) - resumes} to train, {resumes} to resume, "
              f"{len(skipped)} to skip")
    table = format_table(["run", "to do", "params", "non-embedding", "steps", "tokens",
                          "train FLOPs", "est. time"], lines)
    total = (f"total: {total_flops:.2e} training FLOPs to go, about {duration(total_s)} in one "
             f"process at {flops_per_second:.1e} FLOP/s + {seconds_per_run:g} s per run "
             "(--flops_per_second and --seconds_per_run calibrate this for other machines)")
    return "\n".join([header, table, total])


def estimate_seconds(config, left: float = 1.0,
                     flops_per_second: float = DEFAULT_FLOPS_PER_SECOND,
                     seconds_per_run: float = DEFAULT_SECONDS_PER_RUN) -> float:
    """Estimated wall seconds of the `left` fraction of a run: its training FLOPs (times the
    optimizer's OPTIMIZER_STEP_COST) and evaluation FLOPs at `flops_per_second`, plus
    `seconds_per_run` (start-up, compilation)."""
    c, info = config, run_model_info(config)
    flops = c.train.steps * c.train.batch_size * c.data.seq_len * info["flops_per_token"]
    evals = math.ceil(c.train.steps / c.train.eval_every) * len(c.data.eval_corpora)
    eval_flops = (evals * c.data.eval_batches * c.data.eval_batch_size * c.data.seq_len
                  * info["flops_per_token"] / 3)  # forward only: a third of training
    step_cost = OPTIMIZER_STEP_COST.get(c.optimizer.name, 1.0)
    return left * (step_cost * flops + eval_flops) / flops_per_second + seconds_per_run


def _action(outcome: dict, before: Progress) -> str:
    """What this invocation did to a run: busy (another trainer held its workdir), resumed or
    trained."""
    if outcome["status"] == "busy":
        return "busy"
    return "resumed" if before.checkpoint else "trained"


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


def duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s" if minutes else f"{s}s"


@contextlib.contextmanager
def owned(root: str, user: str):
    """Holds `root` for this process (lm/train/workdir.py's lock, released even on kill -9):
    a second `user` (sweep, study) on it gets SweepError naming the holder."""
    with contextlib.ExitStack() as stack:
        with as_sweep_error():
            stack.enter_context(run_files.held(root, user=user, flag="--runs_dir"))
        yield


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, what: str = "sweep"):
    """SIGINT / SIGTERM set `stop` (the executors then start nothing and stop what runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        if not stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping the {what}; running runs save a "
                  "checkpoint. Rerun the same command to go on.", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
