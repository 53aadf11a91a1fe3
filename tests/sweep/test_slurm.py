"""lm/sweep/slurm.py: the sbatch script of a dry run (and that it is the one submitted), the
--slurm_* flags' errors, submitit failures as outcomes, a sweep through submitit's local
executor, and a run preempted (USR2) mid-training that is requeued and resumes. No test runs on
a SLURM cluster: sbatch and srun are stand-ins here."""
import csv
import os
import signal
import stat
import threading

import cloudpickle
import pytest
import submitit

from lm.sweep import cli as sweep_cli
from lm.sweep import runner, slurm
from lm.sweep.executors import Task
from lm.sweep.spec import Sweep, lr_grid
from lm.train import runtime
from lm.train.loop import StopRequested
from tests import REPO

TINY = os.path.join(REPO, "configs", "sweeps", "tiny.py")
FLAGS = ["--executor=slurm", "--slurm_partition=gpu", "--slurm_gpus_per_node=8",
         "--slurm_time=4:00:00", "--slurm_array", "--slurm_array_parallelism=2",
         "--slurm_account=acct", "--slurm_qos=high", "--slurm_sbatch=constraint=h100",
         "--slurm_setup=module load cuda"]


def tiny_sweep(data_root, lrs=(1e-2, 3e-2)) -> Sweep:
    loaded = runner.load_sweep(TINY)
    loaded.base.data.root = data_root
    return Sweep(loaded.base, lr_grid({"adamw": list(lrs)}))


def tasks_of(root, names=("a", "b", "c")) -> list[Task]:
    return [Task(name, None, os.path.join(root, name)) for name in names]


def test_dry_run_prints_the_sbatch_script(tmp_path, capsys):
    root = tmp_path / "runs"
    assert sweep_cli.main([f"--sweep={TINY}", f"--runs_dir={root}", "--dry_run", *FLAGS]) == 0
    out = capsys.readouterr().out
    script = out[out.index("sbatch script (one job array of 3 runs):"):]
    for line in ["#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=8", "#SBATCH --time=240",
                 "#SBATCH --array=0-2%2", "#SBATCH --account=acct", "#SBATCH --qos=high",
                 "#SBATCH --constraint=h100", "#SBATCH --requeue", "#SBATCH --signal=USR2@120",
                 "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "module load cuda",
                 f"#SBATCH --output={root}/slurm/%A_%a/%A_%a_0_log.out"]:
        assert f"\n{line}\n" in script, line
    command = script.strip().splitlines()[-1]
    assert command.startswith("srun --unbuffered --output") and command.endswith(
        f"-u -m submitit.core._submit {root}/slurm/%j")
    assert not root.exists()  # a dry run writes nothing


def fake_slurm(tmp_path, monkeypatch) -> str:
    """sbatch and srun stand-ins on PATH: sbatch keeps each script it is given in CAPTURE."""
    bin_dir, capture = tmp_path / "bin", tmp_path / "capture"
    bin_dir.mkdir()
    capture.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/bash\ncp "$1" {capture}/$(ls {capture} | wc -l).sh\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 1\n")
    for name in ("sbatch", "srun"):
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return capture


@pytest.mark.parametrize("array", [True, False])
def test_the_dry_runs_script_is_the_one_submitted(tmp_path, monkeypatch, array):
    capture = fake_slurm(tmp_path, monkeypatch)
    cluster = slurm.SlurmCluster(slurm.Settings(partition="gpu", gpus_per_node=8, array=array,
                                                sbatch=("exclusive",)))
    tasks = tasks_of(str(tmp_path / "runs"))
    described = cluster.describe(tasks)
    submitted = cluster.submit(tasks)
    assert [task for task, _ in submitted] == tasks
    assert [job.job_id for _, job in submitted] == (["4242_0", "4242_1", "4242_2"] if array
                                                    else ["4242"] * 3)
    scripts = sorted(os.listdir(capture))
    assert len(scripts) == (1 if array else 3)
    first = (capture / scripts[0]).read_text()
    assert described.split(":\n", 1)[1] == first and "\n#SBATCH --exclusive\n" in first
    assert ("#SBATCH --job-name=runs" if array else "#SBATCH --job-name=a") in first


@pytest.mark.parametrize("flags, error", [
    (["--slurm_partition=gpu"], "--slurm_partition applies to --executor=slurm"),
    (["--executor=slurm", "--slurm_array_parallelism=4"], "add --slurm_array"),
    (["--executor=slurm", "--slurm_time=4h"], "--slurm_time=4h: give MINUTES, H:MM:SS"),
    (["--executor=slurm", "--slurm_nodes_per_run=0"], "--slurm_nodes_per_run=0 must be at least"),
    (["--executor=slurm", "--slurm_mem=lots"], "--slurm_mem=lots: give a size like 200G"),
    (["--executor=slurm", "--slurm_sbatch=--exclusive"], "as KEY=VALUE or KEY, without dashes"),
    (["--executor=slurm", "--slurm_time=2", "--slurm_signal_delay_s=120"],
     "must be less than --slurm_time (120 s)"),
    (["--executor=slurm"], "sbatch is not on PATH; run this on a SLURM login node"),
])
def test_bad_slurm_flags_stop_before_any_run(tmp_path, capsys, monkeypatch, flags, error):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.setattr(runner, "load_sweep", lambda path: pytest.fail("went on to the sweep"))
    assert sweep_cli.main([f"--sweep={TINY}", f"--runs_dir={tmp_path / 'runs'}", *flags]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and error in message and message.count("\n") == 1


def test_study_takes_the_slurm_flags(capsys):
    from lm.study import cli as study_cli

    assert study_cli.main(["--dry_run", "--slurm_qos=high"]) == 2
    assert "--slurm_qos applies to --executor=slurm" in capsys.readouterr().err
    assert "--slurm_array" in study_cli.PARSER.format_help()


@pytest.mark.parametrize("text, expected", [("90", 90), ("1:30", 2), ("4:00:00", 240),
                                            ("2-0", 2880), ("1-12:30", 2190),
                                            ("0-0:0:59", 1)])
def test_minutes_of_a_slurm_time_limit(text, expected):
    assert slurm.minutes(text) == expected


@pytest.mark.parametrize("text", ["", "0", "4h", "1:2:3:4", "-5"])
def test_minutes_rejects_what_sbatch_would(text):
    with pytest.raises(ValueError):
        slurm.minutes(text)


def test_checkpoint_resubmits_the_same_run(tiny_config, tmp_path):
    run = slurm.SlurmRun(Task("lr=0.01", tiny_config, str(tmp_path / "lr=0.01")))
    resubmission = cloudpickle.loads(cloudpickle.dumps(run.checkpoint()))
    assert isinstance(resubmission, submitit.helpers.DelayedSubmission)
    again = resubmission.function
    assert isinstance(again, slurm.SlurmRun) and (resubmission.args, resubmission.kwargs) == (
        (), {})
    assert (again.task.name, again.task.workdir) == (run.task.name, run.task.workdir)
    assert again.task.config == run.task.config


def test_preemption_stops_the_training_loop_or_else_requeues_at_once():
    requeued = []
    preemption = slurm.Preemption(lambda signum, frame: requeued.append(signum))
    preemption(signal.SIGUSR2, None)  # not training: nothing to save, requeue now
    assert requeued == [signal.SIGUSR2] and preemption.signum == signal.SIGUSR2
    with StopRequested() as stop:  # lm.train's loop: it saves at the next step and returns
        preemption(signal.SIGUSR2, None)
    assert stop.signal_name == "SIGUSR2" and requeued == [signal.SIGUSR2]


@pytest.mark.slow
def test_submitit_failures_become_outcomes(tmp_path, monkeypatch):
    """A job that raises, one that dies without a result, and one cancelled by a stop."""
    monkeypatch.setattr(submitit.Job, "_results_timeout_s", 1)  # no wait for a slow disk
    executor = submitit.LocalExecutor(tmp_path / "%j")
    raised, died, cancelled = (executor.submit(int, "x"), executor.submit(os._exit, 3),
                               executor.submit(os._exit, 0))
    for job in (raised, died, cancelled):
        job.wait()
    outcome = slurm.job_outcome(raised, stopping=False)
    assert outcome["status"] == "failed" and outcome["error"] == (
        f"SLURM job {raised.job_id}: ValueError: invalid literal for int() with base 10: 'x'")
    assert "Traceback" in outcome["traceback"]
    outcome = slurm.job_outcome(died, stopping=False)
    assert outcome["status"] == "failed" and "ended without a result" in outcome["error"]
    assert slurm.job_outcome(cancelled, stopping=True)["status"] == "stopped"


@pytest.mark.slow
def test_a_sweep_through_submitits_local_executor(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the jobs unpickle lm.sweep.slurm.SlurmRun
    root = tmp_path / "root"
    executor = slurm.SlurmCluster(slurm.Settings(gpus_per_node=0, array=True), cluster="local")
    assert runner.run_sweep(tiny_sweep(data_root), str(root), name="tiny", config_path=TINY,
                            executor=executor) == 0
    with open(root / "results.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["lr=0.01", "lr=0.03"]
    for name, row in rows.items():
        assert (row["status"], row["action"], row["step"]) == ("finished", "trained", "16")
        assert float(row["val_loss"]) > 0 and float(row["wall_s"]) > 0
        assert "done: 16 steps" in (root / name / "train.log").read_text()
    jobs = [name for name in os.listdir(root / "slurm") if name.isdigit()]
    assert len(jobs) == 2  # a folder of submitit's files and logs per job


class PreemptedOnce(slurm.SlurmRun):
    """SlurmRun whose first attempt gets USR2 (as SLURM sends it) while step 10 trains."""

    def __call__(self) -> dict:
        if not os.path.exists(os.path.join(self.task.workdir, "checkpoints")):
            real_build = runtime.build

            def build(*args, **kwargs):
                rt = real_build(*args, **kwargs)

                def train_step(state, windows):
                    out = rt.train_step(state, windows)
                    if int(out[0].step) == 10:
                        signal.raise_signal(signal.SIGUSR2)
                    return out
                return rt._replace(train_step=train_step)
            runtime.build = build
        return super().__call__()


@pytest.mark.slow
def test_a_preempted_run_saves_is_requeued_and_resumes(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the job unpickles this module's class
    tiny_config.train.update(dict(steps=16, checkpoint_every=100, eval_every=16))
    workdir = tmp_path / "run"
    executor = submitit.LocalExecutor(tmp_path / "slurm" / "%j")
    executor.update_parameters(timeout_min=60)  # a signal this early is a preemption
    job = executor.submit(PreemptedOnce(Task("run", tiny_config, str(workdir))))
    outcome = job.result()
    assert outcome["status"] == "finished", outcome
    log = (workdir / "train.log").read_text()
    assert "stopped by SIGUSR2 at step 10" in log and "this job is preempted" in log
    assert "Requeued job" in log
    assert "resumed from the checkpoint at step 10" in log and "done: 16 steps" in log
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "16"]


def test_a_stop_cancels_the_jobs_and_reports_them_stopped(tmp_path, monkeypatch):
    """Stopping the sweep cancels every job (scancel) and reports each stopped."""
    cancelled = []

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id
            self.paths = submitit.core.utils.JobPaths(tmp_path, job_id)

        def cancel(self, check=True):
            cancelled.append(self.job_id)

        def done(self):
            return self.job_id in cancelled

    tasks = tasks_of(str(tmp_path))
    cluster = slurm.SlurmCluster(slurm.Settings())
    monkeypatch.setattr(cluster, "submit", lambda tasks: [(t, Job(str(i)))
                                                          for i, t in enumerate(tasks)])
    stop = threading.Event()
    stop.set()
    outcomes = list(cluster.run(tasks, stop))
    assert cancelled == ["0", "1", "2"]
    assert [(t.name, o["status"]) for t, o in outcomes] == [("a", "stopped"), ("b", "stopped"),
                                                          ("c", "stopped")]
