"""launch_tpu.sh --dry-run prints the gcloud command sequence of a TPU run."""
import os
import shlex
import subprocess

import pytest

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
