"""launch_tpu.sh --dry-run prints the gcloud command sequence of a TPU run; with --data-root it
checks the data first and stops before any gcloud call when something is missing (a fake
`gcloud` records the calls)."""
import os
import shlex
import subprocess
import sys

import pytest

from data import prepare
from tests import REPO

WHERE = ["--zone=us-central2-b", "--project=my-project"]


def dry_run(*args):
    proc = subprocess.run(["bash", "launch_tpu.sh", "--dry-run", "--name", "ladder",
                           "--zone", "us-central2-b", "--project", "my-project", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()
            if not line.startswith("#")]


def remote(command):
    """The shell command an `ssh --command=...` line runs on the workers, as words."""
    flag = next(a for a in command if a.startswith("--command="))
    return shlex.split(flag[len("--command="):])


def test_dry_run_prints_create_copy_install_run_and_stream():
    create, archive, scp, install, start, stream = dry_run(
        "--accelerator", "v4-32", "--spot", "--config", "configs/base.py:d256_l4",
        "--workdir", "/mnt/shared/runs/d256", "--", "--config.train.steps=50",
        "--config.data.eval_corpora=('en_docs','code_py')")
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "ladder", *WHERE,
                      "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot"]
    assert archive[:3] == ["git", "archive", "--format=tar.gz"]
    tarball = archive[4]
    assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball,
                   "ladder:optiscale.tar.gz", *WHERE, "--worker=all"]
    assert install[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "ladder"]
    jax_version = next(line.split("=")[1].split()[0] for line in open(
        os.path.join(REPO, "launch_tpu.sh")) if line.startswith("JAX_VERSION="))
    assert "--worker=all" in install and f"jax[tpu]=={jax_version}" in remote(install)
    assert "--worker=all" in start
    words = remote(start)
    assert "OPTISCALE_DISTRIBUTED=1" in words
    train = words[words.index("python"):words.index(">")]
    assert train == ["python", "-m", "lm.train", "--config=configs/base.py:d256_l4",
                     "--workdir=/mnt/shared/runs/d256", "--config.train.steps=50",
                     "--config.data.eval_corpora=('en_docs','code_py')"]
    assert stream[-2:] == ["--worker=0", "--command=tail -n +1 -F optiscale/train.log"]


@pytest.mark.parametrize("accelerator, runtime", [
    ("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"),
    ("v5p-128", "v2-alpha-tpuv5"), ("v6e-8", "v2-alpha-tpuv6e")])
def test_the_runtime_follows_the_accelerator(accelerator, runtime):
    create = dry_run("--accelerator", accelerator)[0]
    assert f"--version={runtime}" in create


def test_async_collectives_set_libtpu_flags():
    start = dry_run("--accelerator", "v5p-8", "--async-collectives")[4]
    flags = next(w for w in remote(start) if w.startswith("LIBTPU_INIT_ARGS="))
    assert "--xla_tpu_enable_async_collective_fusion=true" in flags
    assert not any(w.startswith("LIBTPU_INIT_ARGS=") for w in remote(dry_run()[4]))


def test_teardown_and_logs():
    assert dry_run("--teardown") == [["gcloud", "compute", "tpus", "tpu-vm", "delete", "ladder",
                                      *WHERE, "--quiet"]]
    (stream,) = dry_run("--logs")
    assert stream[4:6] == ["ssh", "ladder"] and "--worker=0" in stream


@pytest.mark.parametrize("args, message", [
    (["--name", "x", "--project", "p"], "--zone is required"),
    (["--name", "x", "--zone", "z", "--project", "p", "--config", "configs/nope.py"],
     "config file configs/nope.py does not exist"),
    (["--name", "x", "--zone", "z", "--project", "p", "--config.train.steps=5"],
     "unknown argument --config.train.steps=5 (overrides of the config go after --)"),
    (["--name", "x", "--zone", "z", "--project", "p", "--accelerator", "v9-8"],
     "unknown accelerator type v9-8"),
])
def test_bad_arguments_are_refused(args, message):
    proc = subprocess.run(["bash", "launch_tpu.sh", "--dry-run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr


# --- data: the check before anything is created, the preparation on worker 0 ---------------

BUCKET = "gs://my-bucket/optiscale-data"
SAMPLE_DATA = ["--config.data.corpus=en_docs_sample",
               "--config.data.eval_corpora=('en_docs_sample',)", "--config.data.tokenizer=byte"]


def test_dry_run_shows_the_data_check_first_and_the_preparation_after_the_install():
    check, create, archive, scp, install, prepare, start, stream = dry_run(
        "--accelerator", "v4-32", "--data-root", BUCKET, "--prepare-data", "--",
        "--config.train.steps=50")
    config_args = ["--config=configs/quickstart.py", "--config.train.steps=50",
                   f"--config.data.root={BUCKET}"]
    assert check == ["python", "-m", "lm.train.prepare_data", "--check", *config_args]
    assert [create[4], archive[0], scp[4], install[4]] == ["create", "git", "scp", "ssh"]
    assert "--worker=all" in install
    assert prepare[4] == "ssh" and "--worker=0" in prepare
    assert remote(prepare)[-7:] == ["JAX_PLATFORMS=cpu", "python", "-m",
                                    "lm.train.prepare_data", *config_args]
    assert "--worker=all" in start
    words = remote(start)
    assert words[words.index("python"):words.index(">")] == [
        "python", "-m", "lm.train", "--config=configs/quickstart.py",
        "--workdir=runs/ladder", "--config.train.steps=50", f"--config.data.root={BUCKET}"]
    assert stream[-1] == "--command=tail -n +1 -F optiscale/train.log"
    # without --prepare-data: the same check, and no preparation on worker 0
    commands = dry_run("--data-root", BUCKET)
    assert commands[0][:4] == ["python", "-m", "lm.train.prepare_data", "--check"]
    assert [c for c in commands if "--worker=0" in c] == [commands[-1]]  # only the log


def launch(tmp_path, *args):
    """launch_tpu.sh for real, with a fake `gcloud` that records its calls: (process, calls)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "gcloud-calls"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "gcloud").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", "launch_tpu.sh", "--name", "ladder", "--zone", "z",
                           "--project", "p", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    return proc, calls.read_text().splitlines() if calls.exists() else []


def test_missing_data_stops_the_launch_before_any_gcloud_call(tmp_path):
    root = tmp_path / "data"
    proc, calls = launch(tmp_path, "--data-root", str(root), "--", *SAMPLE_DATA)
    assert proc.returncode == 1 and calls == []
    assert ("MISSING" in proc.stdout and "python -m data.prepare --corpus en_docs_sample "
            f"--tokenizer byte --data_root {root}" in proc.stdout)
    assert "nothing was created" in proc.stderr and "--prepare-data" in proc.stderr
    assert f"python -m data.prepare ... --data_root {root}" in proc.stderr


def test_missing_data_with_prepare_data_is_prepared_on_worker_0_before_the_run(tmp_path):
    proc, calls = launch(tmp_path, "--data-root", str(tmp_path / "data"), "--prepare-data",
                         "--", *SAMPLE_DATA)
    assert proc.returncode == 0, proc.stderr
    ssh = [c for c in calls if c.split()[3] == "ssh"]
    assert [c.split()[3] for c in calls] == ["describe", "scp", "ssh", "ssh", "ssh", "ssh"]
    install, prepare, start, stream = ssh
    assert "--worker=all" in install and "pip install" in install
    assert "--worker=0" in prepare and "lm.train.prepare_data" in prepare
    assert "--worker=all" in start and "lm.train" in start and "--worker=0" in stream


def test_prepared_data_lets_the_launch_go_on_with_nothing_to_prepare(tmp_path):
    root = tmp_path / "data"
    prepare.ensure_prepared(root, "en_docs_sample", tokenizer="byte", workers=1)
    proc, calls = launch(tmp_path, "--data-root", str(root), "--prepare-data", "--",
                         *SAMPLE_DATA)
    assert proc.returncode == 0, proc.stderr
    assert "--prepare-data has nothing to do" in proc.stderr
    assert [c.split()[3] for c in calls] == ["describe", "scp", "ssh", "ssh", "ssh"]
    assert not any("prepare_data" in c for c in calls)
    assert f"--config.data.root={root}" in calls[3]


@pytest.mark.parametrize("args, message", [
    (["--prepare-data"], "--prepare-data needs --data-root ROOT"),
    (["--data-root", BUCKET, "--", "--config.data.root=gs://other"],
     "give the data root once"),
])
def test_bad_data_arguments_are_refused(args, message):
    proc = subprocess.run(["bash", "launch_tpu.sh", "--dry-run", "--name", "x", "--zone", "z",
                           "--project", "p", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and message in proc.stderr


def test_a_check_that_cannot_run_stops_the_launch_unless_worker_0_prepares(tmp_path):
    args = ["--data-root", str(tmp_path / "data"), "--", "--config.data.corpus=nope"]
    proc, calls = launch(tmp_path, *args)
    assert proc.returncode == 2 and calls == []
    assert "unknown corpus or source 'nope'" in proc.stderr
    assert "the data check could not run" in proc.stderr
    proc, calls = launch(tmp_path, "--prepare-data", *args)
    assert proc.returncode == 0 and "warning: the data check could not run" in proc.stderr
    assert any("--worker=0" in c and "lm.train.prepare_data" in c for c in calls)
