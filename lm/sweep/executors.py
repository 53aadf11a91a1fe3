"""Where a sweep's runs execute: here one after another, N local processes at once, or Ray tasks
(SLURM jobs: lm/sweep/slurm.py).

`executor.run(tasks, stop)` yields (task, outcome) as runs end; an outcome is `execute_run`'s
dict, so a crash or a divergence is a result, not an exception. Once the `stop` event is set
(lm.sweep sets it on SIGINT / SIGTERM) no run starts; running ones are asked to stop: they save
a checkpoint and the next invocation of the sweep resumes them.
"""
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Iterator

import ml_collections

from core.processes import die_with_parent as _die_with_parent
from lm import train
from lm.train import workdir as run_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACEBACK_CHARS = 4000  # the tail of a crash's traceback kept in its record
POLL_S = 1.0  # how often a waiting executor looks at the stop event


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    config: ml_collections.ConfigDict
    workdir: str


def execute_run(task: Task, log_to_file: bool = False) -> dict:
    """Trains (or resumes) `task` with lm.train.run and says how it ended: {status, error,
    traceback, wall_s}, status one of finished, stopped (by a signal; resumable), busy (another
    trainer holds the workdir: not the run's failure), diverged (a non-finite loss:
    FloatingPointError) or failed (any other exception). `log_to_file` sends
    this process's output to WORKDIR/train.log (runs that execute away from the console)."""
    if log_to_file:
        with _output_to(os.path.join(task.workdir, run_files.TRAIN_LOG)):
            return execute_run(task)
    start = time.perf_counter()
    status, error, trace = "finished", "", ""
    try:
        summary = train.run(task.config, task.workdir)
        if summary["stopped"]:
            status, error = "stopped", f"stopped by {summary['stopped']}; resumable"
    except KeyboardInterrupt:
        status, error = "stopped", "KeyboardInterrupt"
    except run_files.InUse as err:
        status, error = "busy", str(err)
    except FloatingPointError as err:
        status, error = "diverged", str(err)
    except Exception as err:
        status, error, trace = "failed", f"{type(err).__name__}: {err}", traceback.format_exc()
    return {"status": status, "error": error, "traceback": trace[-TRACEBACK_CHARS:],
            "wall_s": time.perf_counter() - start}


class InProcess:
    """One run after another in this process, printing to the console. A signal reaches the
    running lm.train loop directly, which saves and returns "stopped"."""

    def run(self, tasks: list[Task], stop: threading.Event) -> Iterator[tuple[Task, dict]]:
        for task in tasks:
            if stop.is_set():
                return
            yield task, execute_run(task)


class LocalProcesses:
    """`processes` runs at once, each in a fresh spawned process (JAX is not fork-safe), pinned
    to its share of this machine's cores so that the runs' XLA thread pools do not compete for
    the same cores. Each run's output goes to WORKDIR/train.log."""

    def __init__(self, processes: int):
        self.processes = processes

    def run(self, tasks: list[Task], stop: threading.Event) -> Iterator[tuple[Task, dict]]:
        context = multiprocessing.get_context("spawn")
        queue, free_slots, running = list(tasks), list(range(self.processes)), {}
        terminated = set()
        try:
            while queue or running:
                while queue and free_slots and not stop.is_set():
                    task, slot = queue.pop(0), free_slots.pop(0)
                    receiver, sender = context.Pipe(duplex=False)
                    cores = core_share(slot, self.processes)
                    process = context.Process(target=_child_main, name=f"sweep:{task.name}",
                                              args=(task, sender, cores, os.getpid()))
                    process.start()
                    sender.close()
                    running[receiver] = (task, process, slot)
                if not running:
                    return
                for _, process, _ in running.values() if stop.is_set() else ():
                    if process.pid not in terminated:
                        process.terminate()  # SIGTERM: lm.train saves and returns
                        terminated.add(process.pid)
                for receiver in multiprocessing.connection.wait(list(running), timeout=POLL_S):
                    task, process, slot = running.pop(receiver)
                    try:
                        outcome = receiver.recv()
                    except EOFError:  # the process died without a word (killed, segfault)
                        process.join()  # its exit code is known once it has ended
                        outcome = _died(process, stop.is_set())
                    process.join()
                    receiver.close()
                    free_slots.append(slot)
                    yield task, outcome
        finally:  # the caller stopped listening: stop the runs, which keep their checkpoints
            for _, process, _ in running.values():
                process.terminate()
                process.join()


class RayCluster:
    """Each run a Ray task needing `cpus` CPUs and `gpus` GPUs, on the cluster at `address`
    (ray.init's: "auto", "ray://host:10001", "host:6379"; "local" starts a local instance; ""
    reads RAY_ADDRESS or starts one). Every worker must import this repo (PYTHONPATH is set to
    its path here: a checkout at the same path, or an installed package) and see the sweep root
    at the same path (shared storage, or a gs:// root): runs resume from their checkpoints
    wherever they land."""

    def __init__(self, address: str, cpus: float, gpus: float):
        self.address, self.cpus, self.gpus = address, cpus, gpus

    def run(self, tasks: list[Task], stop: threading.Event) -> Iterator[tuple[Task, dict]]:
        import ray  # an optional dependency: pip install -e ".[ray]"

        if not ray.is_initialized():
            ray.init(address=self.address or None, runtime_env={"env_vars": _worker_env()},
                     log_to_driver=False)
        # max_calls=1: a fresh worker process per run, as the local executors have
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_calls=1)(execute_run)
        pending = {remote.remote(task, True): task for task in tasks}
        cancelled = False
        while pending:
            if stop.is_set() and not cancelled:
                for ref in pending:
                    ray.cancel(ref)  # a running task gets KeyboardInterrupt: "stopped"
                cancelled = True
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    outcome = _outcome("stopped", "cancelled: the sweep was stopped")
                except ray.exceptions.RayError as err:  # worker died, node lost, ...
                    outcome = _outcome("failed", f"{type(err).__name__}: {err}")
                yield task, outcome


def core_share(slot: int, processes: int) -> set[int] | None:
    """The cores of worker slot `slot` of `processes`: an equal, disjoint share of this
    process's cores (shared round-robin when there are more processes than cores)."""
    if not hasattr(os, "sched_getaffinity"):  # not Linux: no pinning
        return None
    cores = sorted(os.sched_getaffinity(0))
    per_slot = max(1, len(cores) // processes)
    first = slot * per_slot % len(cores)
    return set(cores[first:first + per_slot])


def _child_main(task: Task, sender, cores: set[int] | None, parent: int) -> None:
    _die_with_parent(parent)
    if cores:
        os.sched_setaffinity(0, cores)  # before JAX starts its thread pools
    sender.send(execute_run(task, log_to_file=True))
    sender.close()


def _died(process, stopping: bool) -> dict:
    if stopping:
        return _outcome("stopped", f"process ended with exit code {process.exitcode} while "
                        "the sweep was stopping")
    return _outcome("failed", f"the run's process died with exit code {process.exitcode} "
                    "(negative: killed by that signal; out of memory is a common cause); see "
                    "its train.log")


def _outcome(status: str, error: str) -> dict:
    return {"status": status, "error": error, "traceback": "", "wall_s": 0.0}


@contextlib.contextmanager
def _output_to(path: str):
    """Points this process's stdout and stderr (file descriptors 1 and 2, so C++ logs too) at
    the end of `path`. An object store has no append: for a URL they go to a local temporary
    file, added to `path` on exit (a process killed before then loses them)."""
    if run_files.is_local(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        log, local = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), path
    else:
        log, local = tempfile.mkstemp(suffix=f".{run_files.TRAIN_LOG}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        if local != path:
            sys.stdout.flush()
            sys.stderr.flush()
            with open(local, errors="replace") as f:
                run_files.append_text(path, f.read())
            os.remove(local)


def _worker_env() -> dict:
    """Environment of Ray workers: this repo importable, and the driver's data root if set."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    if os.environ.get("OPTISCALE_DATA_DIR"):
        env["OPTISCALE_DATA_DIR"] = os.environ["OPTISCALE_DATA_DIR"]
    return env
