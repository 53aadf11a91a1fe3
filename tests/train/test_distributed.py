"""Multi-node runs under srun: which GPUs each SLURM task drives and what initialize() hands
jax.distributed (lm/train/distributed.py; the SLURM variables are made up: two CPU processes
really join), and launch_slurm.sh (its command, and its time-limit path with stand-ins for srun and
scontrol: USR1 stops the run, which saves, and the job is requeued)."""
import os
import shlex
import signal
import stat
import subprocess
import sys
import time

import jax
import pytest
from jax._src import clusters

from lm.errors import ConfigError
from lm.train import distributed
from tests import REPO


def srun_task(procid: int, localid: int, nodeid: int, layout: str, gpus: str | None) -> dict:
    """The variables srun gives task `procid` of a job step on 2 nodes (`layout`: its
    SLURM_STEP_TASKS_PER_NODE; `gpus`: the task's CUDA_VISIBLE_DEVICES, None for unset)."""
    ntasks = {"1(x2)": 2, "8(x2)": 16, "2,1": 3, "2(x2)": 4}[layout]
    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[001-002]",
           "SLURM_NTASKS": str(ntasks), "SLURM_PROCID": str(procid),
           "SLURM_LOCALID": str(localid), "SLURM_NODEID": str(nodeid),
           "SLURM_STEP_TASKS_PER_NODE": layout}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


EIGHT = "0,1,2,3,4,5,6,7"


@pytest.mark.parametrize("env, expected", [
    (srun_task(1, 0, 1, "1(x2)", EIGHT), []),            # one task per node: all 8 GPUs
    (srun_task(1, 0, 1, "1(x2)", None), []),             # GPUs not named: all it sees
    (srun_task(11, 3, 1, "8(x2)", EIGHT), [3]),           # one per GPU, each seeing 8
    (srun_task(11, 3, 1, "8(x2)", "3"), [0]),             # one per GPU, bound by srun
    (srun_task(2, 0, 1, "2,1", EIGHT), []),               # uneven: node 1 has one task
    (srun_task(11, 3, 1, "8(x2)", None), None),           # not known: jax's choice
    ({**srun_task(11, 3, 1, "8(x2)", EIGHT), "JAX_LOCAL_DEVICE_IDS": "3"}, None),
    ({"JAX_NUM_PROCESSES": "2"}, None),                   # not SLURM
])
def test_each_slurm_task_drives_its_gpus(env, expected):
    assert distributed.slurm_local_device_ids(env) == expected


def test_a_batch_script_that_did_not_use_srun_is_told_to():
    env = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "16", "SLURM_PROCID": "0"}
    with pytest.raises(ConfigError, match="not one of srun's tasks.*srun python -m lm.train"):
        distributed.slurm_local_device_ids(env)


def test_tasks_that_split_a_nodes_gpus_otherwise_are_told_how():
    with pytest.raises(ConfigError, match="2 SLURM tasks on this node each see 8 GPUs"):
        distributed.slurm_local_device_ids(srun_task(1, 1, 0, "2(x2)", EIGHT))


@pytest.mark.parametrize("layout, node, expected", [("8(x4)", 3, 8), ("2,1", 1, 1),
                                                    ("4(x2),3", 2, 3), ("4(x2)", 2, None),
                                                    ("odd", 0, None)])
def test_tasks_on_node(layout, node, expected):
    env = {"SLURM_STEP_TASKS_PER_NODE": layout, "SLURM_NODEID": str(node)}
    assert distributed.tasks_on_node(env) == expected


def test_initialize_joins_an_srun_step_with_the_tasks_gpus(monkeypatch):
    """jax's SLURM detection fills in the coordinator, count and id, and keeps our device ids
    ([]: every GPU, where jax alone would pick GPU SLURM_LOCALID)."""
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    env = srun_task(1, 0, 1, "1(x2)", EIGHT)
    for name in ("JAX_NUM_PROCESSES", "OPTISCALE_DISTRIBUTED", "JAX_LOCAL_DEVICE_IDS",
                 "SLURM_TASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    distributed.initialize()
    assert calls == [{"local_device_ids": []}]
    assert clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, [], None, 300) == ("gpu001:" + str(4242 % 4096 + 61440), 2, 1, [])

    monkeypatch.setenv("SLURM_NTASKS", "1")  # one process: nothing to join
    distributed.initialize()
    assert len(calls) == 1


def launch(*args, env=None, **kwargs):
    return subprocess.run(["bash", "launch_slurm.sh", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env, **kwargs)


def test_launch_slurm_dry_run_prints_the_srun_command():
    proc = launch("--dry-run", "--config", "configs/base.py:d256_l4", "--workdir",
                  "/shared/runs/d256", "--", "--config.mesh.data=4",
                  "--config.data.eval_corpora=('en_docs','code_py')")
    assert proc.returncode == 0, proc.stderr
    (command,) = [shlex.split(line) for line in proc.stdout.splitlines()
                  if not line.startswith("#")]
    assert command == ["srun", "--kill-on-bad-exit=1", "python", "-m", "lm.train",
                       "--config=configs/base.py:d256_l4", "--workdir=/shared/runs/d256",
                       "--config.mesh.data=4", "--config.data.eval_corpora=('en_docs','code_py')"]
    header = [line for line in open(os.path.join(REPO, "launch_slurm.sh"))
              if line.startswith("#SBATCH")]
    for option in ("--requeue", "--signal=B:USR1@300", "--gpus-per-node=8", "--open-mode=append"):
        assert f"#SBATCH {option}\n" in header


@pytest.mark.parametrize("args, message", [
    (["--config", "configs/base.py"], "--workdir is required"),
    (["--workdir", "w", "--config", "nope.py"], "config file nope.py does not exist"),
    (["--workdir", "w", "--nodes", "2"], "unknown argument --nodes"),
    (["--workdir", "w"], "not in a SLURM job: submit this script with sbatch"),
])
def test_launch_slurm_refuses_bad_input(args, message):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    proc = launch(*args, env=env)
    assert proc.returncode == 2 and f"error: {message}" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_launch_slurm_saves_and_requeues_at_the_time_limit(tmp_path, data_root):
    """USR1 (SLURM's B:USR1 before the time limit): the script sends SIGTERM to the run, which
    saves a checkpoint and exits 0, then requeues the job."""
    bin_dir, calls, workdir = tmp_path / "bin", tmp_path / "scontrol_calls", tmp_path / "run"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ $1 == -* ]]; do shift; done\n'
                                  'exec "$@"\n')  # one task, here
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {calls}\n')
    for name in ("srun", "scontrol"):
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable, "SLURM_JOB_ID": "4242", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        ["bash", "launch_slurm.sh", "--config", "configs/quickstart.py", "--workdir",
         str(workdir), "--", f"--config.data.root={data_root}", "--config.data.tokenizer=byte",
         "--config.data.corpus=en_docs_sample", "--config.data.eval_corpora=('en_docs_sample',)",
         "--config.train.steps=100000", "--config.train.log_every=5"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (workdir / "metrics.jsonl").exists():  # the run is in its training loop
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and "requeueing job 4242" in err, (out, err)
    assert calls.read_text() == "requeue 4242\n"
    assert [d for d in os.listdir(workdir / "checkpoints") if d.isdigit()]


JOIN = """
import jax
from lm.train import distributed
distributed.initialize()
print("joined", jax.process_index(), jax.process_count(), len(jax.devices()), flush=True)
"""


@pytest.mark.slow
def test_two_srun_tasks_join_with_jax_distributed(tmp_path):
    """Two processes with the variables srun gives one task on each of 2 nodes (both here, on
    CPU): jax's SLURM detection and our device ids really initialize jax.distributed."""
    job_id = str(os.getpid())  # the coordinator's port follows the job id
    procs = [subprocess.Popen(
        [sys.executable, "-c", JOIN], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
                        **srun_task(i, 0, i, "1(x2)", None), "SLURM_JOB_ID": job_id,
                        "SLURM_STEP_NODELIST": "localhost,localhost"})
        for i in range(2)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    for i, (proc, (out, err)) in enumerate(zip(procs, outs)):
        assert proc.returncode == 0, err[-3000:]
        assert f"joined {i} 2 2" in out, (out, err[-3000:])
