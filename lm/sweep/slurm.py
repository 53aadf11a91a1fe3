"""The slurm executor: each run of a sweep a SLURM job, or one task of a job array, submitted
with submitit (the `slurm` extra: pip install -e ".[slurm]").

    python -m lm.sweep --sweep=... --runs_dir=/shared/sweep --executor=slurm \\
        --slurm_partition=gpu --slurm_gpus_per_node=1 --slurm_time=4:00:00 [--slurm_array]

A job runs `execute_run` in `python -m submitit.core._submit` on a node, with the driver's Python
(sys.executable) and environment, so the nodes must see this repository, the Python environment
and RUNS_DIR at the same paths (shared storage). Its output goes to WORKDIR/train.log; submitit's
job files and logs to RUNS_DIR/slurm/<job id>/ (--slurm_logs).

Requeue: SLURM sends USR2 (submitit's preemption signal) --slurm_signal_delay_s before the time
limit, and at a preemption where the cluster sends the job's signal then (slurm.conf
PreemptParameters=send_user_signal). The run's lm.train loop then saves a checkpoint at the next
step and returns; the job requeues itself (scontrol requeue) and its next start resumes from that
checkpoint. A time limit requeues at most --slurm_max_timeouts times. A SIGTERM alone (scancel,
or a preemption without the signal) also makes the loop save and return, and the job then ends
without a result: the sweep goes by SLURM's state of it (requeued by SLURM: it runs again and
resumes; cancelled: the run is reported failed, and the next invocation resumes it).

Stopping the sweep (SIGINT / SIGTERM to lm.sweep) cancels its jobs with scancel: queued ones
leave the queue, running ones get SIGTERM, save a checkpoint (within the cluster's KillWait) and
end; they are reported stopped, and the next invocation resumes them.

Tested here with submitit's LocalExecutor (the same jobs as processes on this machine) and a
USR2 in the middle of a run; sbatch scripts are compared with submitit's own, but no test runs on
a SLURM cluster.
"""
import dataclasses
import importlib.util
import math
import os
import re
import shlex
import shutil
import signal
import sys
import time
import types
from pathlib import Path
from typing import Iterator

from core import cli
from lm.sweep.executors import POLL_S, TRACEBACK_CHARS, Task, _outcome, execute_run
from lm.train import distributed
from lm.train import workdir as run_files
from lm.train.loop import StopRequested

FOLDER = "slurm"  # submitit's job files and logs: RUNS_DIR/slurm/<job id>/
CANCEL_WAIT_S = 60.0  # after a stop, how long the sweep waits for cancelled jobs to end


@dataclasses.dataclass(frozen=True)
class Settings:
    """The SLURM job of each run (the --slurm_* flags)."""
    partition: str = ""
    time_min: int = 24 * 60
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 0
    mem: str = ""
    account: str = ""
    qos: str = ""
    sbatch: tuple[str, ...] = ()  # more sbatch options, KEY or KEY=VALUE
    setup: tuple[str, ...] = ()   # shell lines before the run starts
    array: bool = False
    array_parallelism: int = 0    # 0: every run of the array at once
    max_timeouts: int = 3
    signal_delay_s: int = 120
    logs: str = ""                # submitit's folder (default RUNS_DIR/slurm)


def add_flags(parser) -> None:
    """The --slurm_* flags of --executor=slurm (lm.sweep's and lm.study's)."""
    add = parser.add_argument
    add("--slurm_partition", default="", help="slurm: the partition (sbatch --partition; "
        "empty: the cluster's default)")
    add("--slurm_time", default="24:00:00", metavar="TIME",
        help="slurm: each job's time limit, MINUTES, H:MM:SS or D-H:MM:SS (sbatch --time); a "
             "longer run is requeued from its checkpoint (--slurm_max_timeouts)")
    add("--slurm_nodes_per_run", type=int, default=1,
        help="slurm: nodes of each run (sbatch --nodes); its processes join with "
             "jax.distributed")
    add("--slurm_tasks_per_node", type=int, default=1,
        help="slurm: processes of a run per node (sbatch --ntasks-per-node): 1 (it drives all "
             "the node's GPUs) or --slurm_gpus_per_node (one per GPU)")
    add("--slurm_gpus_per_node", type=int, default=1,
        help="slurm: GPUs of each run on each of its nodes (sbatch --gpus-per-node; 0: none)")
    add("--slurm_cpus_per_task", type=int, default=0,
        help="slurm: CPUs per process (sbatch --cpus-per-task; 0: the cluster's default)")
    add("--slurm_mem", default="", metavar="SIZE",
        help="slurm: memory per node, e.g. 200G (sbatch --mem; empty: the cluster's default)")
    add("--slurm_account", default="", help="slurm: the account to charge (sbatch --account)")
    add("--slurm_qos", default="", help="slurm: the quality of service (sbatch --qos)")
    add("--slurm_sbatch", action="append", default=[], metavar="KEY[=VALUE]",
        help="slurm: another sbatch option, repeatable, e.g. constraint=h100 or exclusive")
    add("--slurm_setup", action="append", default=[], metavar="COMMAND",
        help="slurm: a shell line each job runs first, repeatable, e.g. 'module load cuda'")
    add("--slurm_array", action="store_true",
        help="slurm: submit the runs as one job array (sbatch --array) instead of one job each")
    add("--slurm_array_parallelism", type=int, default=0,
        help="slurm: with --slurm_array, the runs that may run at once (0: all)")
    add("--slurm_max_timeouts", type=int, default=3,
        help="slurm: times a run is requeued after reaching --slurm_time (preemptions do not "
             "count); after that it is reported failed")
    add("--slurm_signal_delay_s", type=int, default=120,
        help="slurm: seconds before the time limit that SLURM sends USR2: the run saves a "
             "checkpoint and its job is requeued")
    add("--slurm_logs", default="", metavar="DIR",
        help="slurm: submitit's job files and logs, on storage the nodes share (empty: "
             "RUNS_DIR/slurm; required for a gs:// RUNS_DIR)")


def check_flags(parser, args) -> None:
    """UsageError for --slurm_* flags that would do nothing: given without --executor=slurm, or
    --slurm_array_parallelism without --slurm_array."""
    given = [f"--{name}" for name, value in vars(args).items()
             if name.startswith("slurm_") and value != parser.get_default(name)]
    if given and args.executor != "slurm":
        raise cli.UsageError(f"{given[0]} applies to --executor=slurm; add --executor=slurm or "
                             f"leave {given[0]} out")
    if args.slurm_array_parallelism and not args.slurm_array:
        raise cli.UsageError("--slurm_array_parallelism limits a job array: add --slurm_array")


def from_args(args) -> "SlurmCluster":
    """The executor of --executor=slurm, its flags checked (UsageError naming the fix), before
    any run is built: sbatch on PATH unless --dry_run, and a local --runs_dir or --slurm_logs."""
    try:
        time_min = minutes(args.slurm_time)
    except ValueError:
        raise cli.UsageError(f"--slurm_time={args.slurm_time}: give MINUTES, H:MM:SS or "
                             "D-H:MM:SS, e.g. --slurm_time=24:00:00") from None
    for flag, least in (("nodes_per_run", 1), ("tasks_per_node", 1), ("gpus_per_node", 0),
                        ("cpus_per_task", 0), ("array_parallelism", 0), ("max_timeouts", 0),
                        ("signal_delay_s", 1)):
        if getattr(args, f"slurm_{flag}") < least:
            raise cli.UsageError(f"--slurm_{flag}={getattr(args, f'slurm_{flag}')} must be at "
                                 f"least {least}")
    if args.slurm_mem and not re.fullmatch(r"\d+[KMGT]?", args.slurm_mem):
        raise cli.UsageError(f"--slurm_mem={args.slurm_mem}: give a size like 200G or 64000M")
    for option in args.slurm_sbatch:
        if not re.fullmatch(r"[A-Za-z][\w-]*(=.*)?", option):
            raise cli.UsageError(f"--slurm_sbatch={option}: give an sbatch option as KEY=VALUE "
                                 "or KEY, without dashes, e.g. constraint=h100")
    if args.slurm_signal_delay_s >= time_min * 60:
        raise cli.UsageError(f"--slurm_signal_delay_s={args.slurm_signal_delay_s} must be less "
                             f"than --slurm_time ({time_min * 60} s)")
    if not args.slurm_logs and not run_files.is_local(args.runs_dir or "."):
        raise cli.UsageError(f"--runs_dir={args.runs_dir} is not a local path; give "
                             "--slurm_logs=DIR, a directory the nodes share, for submitit's files")
    if importlib.util.find_spec("submitit") is None:
        raise cli.UsageError("--executor=slurm needs submitit, which is not installed: "
                             "pip install -e '.[slurm]'")
    if not args.dry_run and shutil.which("sbatch") is None:
        raise cli.UsageError("--executor=slurm: sbatch is not on PATH; run this on a SLURM "
                             "login node (--dry_run prints the sbatch script anywhere)")
    return SlurmCluster(Settings(
        partition=args.slurm_partition, time_min=time_min, nodes=args.slurm_nodes_per_run,
        tasks_per_node=args.slurm_tasks_per_node, gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task, mem=args.slurm_mem,
        account=args.slurm_account, qos=args.slurm_qos, sbatch=tuple(args.slurm_sbatch),
        setup=tuple(args.slurm_setup), array=args.slurm_array,
        array_parallelism=args.slurm_array_parallelism, max_timeouts=args.slurm_max_timeouts,
        signal_delay_s=args.slurm_signal_delay_s,
        logs=os.path.abspath(args.slurm_logs) if args.slurm_logs else ""))


def minutes(text: str) -> int:
    """The minutes (rounded up) of a SLURM time limit: MINUTES, MINUTES:SECONDS, H:MM:SS, D-H,
    D-H:MM or D-H:MM:SS, as sbatch --time reads it; ValueError for anything else or zero."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        raise ValueError(text)
    days, first, second, third = match.groups()
    if days is not None or third is not None:  # hours first
        hours, mins, secs = int(first), int(second or 0), int(third or 0)
    else:
        hours, mins, secs = 0, int(first), int(second or 0)
    seconds = ((int(days or 0) * 24 + hours) * 60 + mins) * 60 + secs
    if seconds == 0:
        raise ValueError(text)
    return math.ceil(seconds / 60)


def sbatch_parameters(settings: Settings, job_name: str, runs: int) -> dict:
    """submitit.SlurmExecutor's parameters of a job (or a job array of `runs` runs): the
    --slurm_* flags, `--requeue`, and USR2 `signal_delay_s` before the time limit."""
    s = settings
    extra = {key: value if eq else True
             for key, eq, value in (option.partition("=") for option in s.sbatch)}
    params = {"job_name": job_name, "time": s.time_min, "nodes": s.nodes,
              "ntasks_per_node": s.tasks_per_node, "signal_delay_s": s.signal_delay_s,
              "array_parallelism": s.array_parallelism or max(1, runs),
              "additional_parameters": {"requeue": True, **extra}}
    optional = {"partition": s.partition, "gpus_per_node": s.gpus_per_node,
                "cpus_per_task": s.cpus_per_task, "mem": s.mem, "account": s.account,
                "qos": s.qos, "setup": list(s.setup)}
    params.update({key: value for key, value in optional.items() if value})
    return params


class SlurmRun:
    """One run as a submitit job, following submitit's Checkpointable protocol: `checkpoint`
    returns the job's resubmission, which submitit's USR2 handler stores before it requeues."""

    def __init__(self, task: Task):
        self.task = task

    def __call__(self) -> dict:
        """Trains (or resumes) the run: execute_run's outcome. After a preemption signal the
        run saves a checkpoint and the job is requeued (the process exits); after another stop
        signal (SIGTERM: scancel) it exits without a result (see the module docstring)."""
        import submitit

        distributed.initialize()  # a run of several processes: they join here
        usr = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
        preemption = Preemption(signal.getsignal(usr))
        signal.signal(usr, preemption)
        rank = submitit.JobEnvironment().global_rank
        outcome = execute_run(self.task, log_to_file=rank == 0)
        if outcome["status"] != "stopped":
            return outcome
        if preemption.signum is not None:  # process 0: checkpoint(), requeue, exit
            preemption.requeue(preemption.signum, None)
        raise SystemExit(f"{outcome['error']}: the run saved a checkpoint; this job leaves no "
                         "result, and the sweep goes by SLURM's state of it")

    def checkpoint(self):
        """This run, resubmitted: its next start resumes from the run's checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


class Preemption:
    """The handler of submitit's preemption signal while a run trains: in lm.train's loop it
    stops the loop as SIGTERM would (a checkpoint at the next step; the caller then requeues
    with `requeue`); elsewhere it requeues at once (the last checkpoint is all there is)."""

    def __init__(self, requeue):
        self.requeue = requeue  # submitit's handler: checkpoint(), scontrol requeue, exit
        self.signum = None

    def __call__(self, signum, frame) -> None:
        self.signum = signum
        trainer = signal.getsignal(signal.SIGTERM)
        if isinstance(getattr(trainer, "__self__", None), StopRequested):
            trainer(signum, frame)
        else:
            self.requeue(signum, frame)


class SlurmCluster:
    """Each run a SLURM job (`settings`: the --slurm_* flags), or with settings.array one task of
    a job array, all submitted at once; `cluster`: "slurm", or "local" (submitit's
    LocalExecutor: the jobs as processes on this machine, without the sbatch options)."""

    def __init__(self, settings: Settings, cluster: str = "slurm"):
        self.settings, self.cluster = settings, cluster

    def run(self, tasks: list[Task], stop) -> Iterator[tuple[Task, dict]]:
        if not tasks:
            return
        submitted = self.submit(tasks)
        pending = {job: task for task, job in submitted if not isinstance(job, dict)}
        cancelled_at = None
        try:
            for task, refused in submitted:
                if isinstance(refused, dict):  # sbatch refused it: a failed outcome
                    yield task, refused
            while pending:
                if stop.is_set() and cancelled_at is None:
                    for job in pending:
                        job.cancel(check=False)  # scancel: running jobs get SIGTERM and save
                    cancelled_at = time.monotonic()
                for job in [job for job in pending if job.done()]:
                    yield pending.pop(job), job_outcome(job, stop.is_set())
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_WAIT_S:
                    for job, task in pending.items():
                        yield task, _outcome("stopped", f"the sweep was stopped; SLURM job "
                                             f"{job.job_id} was cancelled (it may still be "
                                             "saving a checkpoint)")
                    return
                if pending:
                    time.sleep(POLL_S)
        finally:  # the caller stopped listening: cancel the jobs, which keep their checkpoints
            for job in pending if cancelled_at is None else ():
                job.cancel(check=False)

    def submit(self, tasks: list[Task]) -> list[tuple[Task, object]]:
        """(task, its submitit Job, or a failed outcome where submission failed) for each
        task, submitted as one job array with settings.array, else one job each."""
        import submitit

        folder = self.folder(tasks)
        if self.cluster == "local":
            executor = submitit.LocalExecutor(folder, max_num_timeout=self.settings.max_timeouts)
            executor.update_parameters(
                timeout_min=self.settings.time_min, gpus_per_node=self.settings.gpus_per_node,
                tasks_per_node=self.settings.tasks_per_node,
                signal_delay_s=self.settings.signal_delay_s, setup=list(self.settings.setup))
        else:
            executor = submitit.SlurmExecutor(folder, max_num_timeout=self.settings.max_timeouts)
        jobs, ids = [], set()
        groups = [tasks] if self.settings.array else [[task] for task in tasks]
        for group in groups:
            if self.cluster != "local":
                executor.update_parameters(**sbatch_parameters(
                    self.settings, _job_name(group), len(group)))
            try:
                submitted = executor.submit_array([SlurmRun(task) for task in group])
            except (RuntimeError, OSError) as err:  # sbatch refused: a bad partition, ...
                jobs += [(task, _outcome("failed", f"sbatch refused the job: {err}"))
                         for task in group]
                continue
            jobs += list(zip(group, submitted))
            ids |= {str(job.job_id).split("_")[0] for job in submitted}  # an array's: one
        if ids:
            print(f"slurm: submitted {len(tasks)} runs as job{'s' if len(ids) > 1 else ''} "
                  f"{', '.join(sorted(ids))}; submitit's files and logs: {folder}",
                  file=sys.stderr, flush=True)
        return jobs

    def describe(self, tasks: list[Task]) -> str:
        """The sbatch script `run` would submit for `tasks` (the first job's, without
        settings.array), made by submitit's own code; submits nothing."""
        from submitit.slurm import slurm as submitit_slurm

        folder = Path(self.folder(tasks))
        group = tasks if self.settings.array else tasks[:1]
        command = submitit_slurm.SlurmExecutor._submitit_command_str.fget(
            types.SimpleNamespace(python=shlex.quote(sys.executable), folder=folder))
        script = submitit_slurm._make_sbatch_string(
            command=command, folder=folder, map_count=len(group) if len(group) > 1 else None,
            **sbatch_parameters(self.settings, _job_name(group), len(group)))
        what = (f"one job array of {len(tasks)} runs" if len(group) > 1 else
                "one job" if len(tasks) == 1 else
                f"{len(tasks)} jobs, one per run; the first")
        return f"sbatch script ({what}):\n{script}"

    def folder(self, tasks: list[Task]) -> str:
        """submitit's folder: settings.logs or the runs' root/slurm, one subfolder per job."""
        root = self.settings.logs or os.path.join(os.path.dirname(tasks[0].workdir), FOLDER)
        return os.path.join(root, "%j")


def job_outcome(job, stopping: bool) -> dict:
    """execute_run's outcome from the first process of a finished job, or a failed (stopped,
    when `stopping`) outcome for a job that raised or ended without a result."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if stopping and not job.paths.result_pickle.exists():
        return _outcome("stopped", f"the sweep was stopped; SLURM job {job.job_id} was "
                        "cancelled")
    try:
        return job.results()[0]
    except FailedJobError as err:  # an exception outside execute_run, e.g. no requeue left
        parts = str(err).split("-" * 22)  # submitit's message: header, the job's trace, paths
        trace = parts[1] if len(parts) > 2 else str(err)
        last = [line for line in trace.splitlines() if line.strip()][-1]
        return {"status": "failed", "error": f"SLURM job {job.job_id}: {last.strip()}",
                "traceback": str(err)[-TRACEBACK_CHARS:], "wall_s": 0.0}
    except UncompletedJobError as err:
        return {"status": "failed",
                "error": f"SLURM job {job.job_id} ended without a result (state {job.state}: "
                         "cancelled, preempted without a requeue, or killed, e.g. out of "
                         f"memory; its log: {job.paths.stderr}); the next invocation resumes "
                         "it from its checkpoint",
                "traceback": str(err)[-TRACEBACK_CHARS:], "wall_s": 0.0}


def _job_name(tasks: list[Task]) -> str:
    """A run's name for its own job; the runs' root's name for a job array."""
    if len(tasks) == 1:
        return tasks[0].name
    return os.path.basename(os.path.dirname(tasks[0].workdir))
