"""Run files on a URL workdir (lm/train/workdir.py's path layer): memory:// stands in for gs://,
and each test that can also runs on a local directory, which must behave as before."""
import csv
import io
import json
import os
import subprocess
import sys
import uuid

import fsspec
import pytest
from fsspec.registry import _registry as fsspec_classes

from configs import base
from lm import train
from lm.errors import ConfigError, SweepError
from lm.model import ModelConfig
from lm.sweep import runner
from lm.sweep.state import progress
from lm.train import build
from lm.train import workdir as run_files
from lm.train.metrics_log import MetricsLog, read_metrics
from tests import REPO

TINY_SWEEP = os.path.join(REPO, "configs", "sweeps", "tiny.py")


@pytest.fixture
def memory_dir():
    """A fresh memory:// directory, removed afterwards (the filesystem lives as long as the
    process)."""
    path = f"memory://test-{uuid.uuid4().hex}"
    yield path
    fs = fsspec.filesystem("memory")
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture(params=["local", "memory"])
def workdir(request, tmp_path, memory_dir) -> str:
    return str(tmp_path) if request.param == "local" else f"{memory_dir}/run"


@pytest.fixture
def without_gcsfs(monkeypatch):
    """gs:// as on a machine where gcsfs is not installed."""
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    for protocol in ("gs", "gcs"):
        monkeypatch.delitem(fsspec_classes, protocol, raising=False)


def model_cfg(**model) -> ModelConfig:
    config = base.get_config()
    config.model.update(model)
    return ModelConfig.for_run(config, 256)


def test_run_files_round_trip_and_a_changed_shape_is_refused(workdir):
    config = base.get_config()
    model = model_cfg()
    run_files.check_model(workdir, model)  # nothing there yet
    run_files.write_run_files(workdir, config, run_files.model_record(model, {"params/total": 7}))
    assert run_files.read_json(os.path.join(workdir, run_files.CONFIG)) == json.loads(
        config.to_json())
    assert run_files.read_json(os.path.join(workdir, run_files.MODEL))["params/total"] == 7
    run_files.check_model(workdir, model)
    with pytest.raises(ConfigError, match="different model shape .*d_model"):
        run_files.check_model(workdir, model_cfg(d_model=2 * model.d_model))

    config.train.steps += 1  # a resume with another config keeps the first config.json
    run_files.write_run_files(workdir, config, run_files.model_record(model, {}))
    names = run_files.listdir(workdir)
    assert run_files.CONFIG in names and any(n.startswith("config.2") for n in names)
    assert not [n for n in names if ".tmp-" in n]  # local writes renamed their temporaries


def test_metrics_log_writes_resumes_and_branches(workdir, capsys):
    log = MetricsLog(workdir)
    assert log.last_row() == {}
    log.resume_at(0)  # no file yet: nothing to do
    for step in (5, 10, 15, 20):
        log.write({"step": step, "train/loss": 1.0 / step})
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10, 15, 20]
    assert log.last_row() == {"step": 20, "train/loss": 0.05}

    log.resume_at(10)
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10]
    after = run_files.read_text(os.path.join(workdir, "metrics.jsonl.after_10"))
    assert [json.loads(line)["step"] for line in after.splitlines()] == [15, 20]
    assert "2 rows after step 10 moved" in capsys.readouterr().out
    log.write({"step": 15, "train/loss": 0.5})
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10, 15]

    log.start_from([{"step": 1}])  # a branch: the rows there are set aside first
    assert read_metrics(workdir) == [{"step": 1}]
    assert run_files.exists(os.path.join(workdir, "metrics.jsonl.after_0"))


def test_paths_of_a_url_stay_urls(memory_dir, tmp_path):
    assert run_files.absolute(memory_dir) == memory_dir
    assert run_files.absolute(tmp_path) == str(tmp_path)
    assert run_files.absolute("runs/x") == os.path.join(os.getcwd(), "runs", "x")
    assert not run_files.is_local(memory_dir) and run_files.is_local(tmp_path)


def test_move_aside_a_checkpoint_folder(workdir):
    """What Checkpointer._set_aside does with a checkpoint that fails to restore."""
    for name in ("state/array", "meta"):
        run_files.write_text(os.path.join(workdir, "checkpoints", "20", name), name)
    corrupt = os.path.join(workdir, run_files.CORRUPT_CHECKPOINTS)
    assert run_files.listdir(corrupt) == []
    run_files.move(os.path.join(workdir, "checkpoints", "20"), os.path.join(corrupt, "20"))
    assert run_files.listdir(corrupt) == ["20"]
    assert run_files.read_text(os.path.join(corrupt, "20", "state", "array")) == "state/array"
    assert not run_files.exists(os.path.join(workdir, "checkpoints", "20"))
    assert run_files.isdir(os.path.join(corrupt, "20"))


def test_append_text_adds_to_the_end(workdir):
    path = os.path.join(workdir, "train.log")
    run_files.write_text(path, "one\n")
    run_files.append_text(path, "two\n")
    assert run_files.read_text(path) == "one\ntwo\n"


def test_gs_without_gcsfs_fails_before_anything_is_built(tiny_config, without_gcsfs,
                                                         monkeypatch):
    def load(config):
        raise AssertionError("data loaded before the workdir was checked")
    monkeypatch.setattr(build.batches, "load", load)
    with pytest.raises(ConfigError, match="gs://bucket/run.*pip install gcsfs"):
        train.run(tiny_config, "gs://bucket/run")
    tiny_config.train.branch_from = "gs://bucket/parent"
    with pytest.raises(ConfigError, match="pip install gcsfs"):
        train.run(tiny_config, "local/workdir")
    with pytest.raises(SweepError, match="--runs_dir: .*pip install gcsfs"):
        runner.run_sweep(runner.load_sweep(TINY_SWEEP), "gs://bucket/sweep", name="tiny",
                         config_path=TINY_SWEEP, dry_run=True)


class WritesRunFiles:
    """An executor that 'trains' each run by writing the files a finished run leaves."""

    def run(self, tasks, stop):
        for task in tasks:
            steps, corpus = task.config.train.steps, task.config.data.corpus
            log = MetricsLog(task.workdir)
            log.write({"step": steps // 2, "train/loss": 3.0})
            log.write({"step": steps, "train/loss": 2.0, f"eval/{corpus}/loss": 2.5})
            run_files.write_text(os.path.join(task.workdir, "checkpoints", str(steps), "m"), "")
            yield task, {"status": "finished", "error": "", "traceback": "", "wall_s": 1.0}


class RefusesToTrain:
    def run(self, tasks, stop):
        assert not tasks, [t.name for t in tasks]
        yield from ()


def test_a_sweep_keeps_its_tables_and_records_under_a_url(memory_dir, capsys):
    sweep = runner.load_sweep(TINY_SWEEP)
    root = f"{memory_dir}/sweep"
    for executor in (WritesRunFiles(), RefusesToTrain()):  # the rerun skips finished runs
        assert runner.run_sweep(sweep, root, name="tiny", config_path=TINY_SWEEP,
                                executor=executor) == 0
    rows = list(csv.DictReader(io.StringIO(run_files.read_text(f"{root}/results.csv"))))
    assert [(r["status"], r["action"]) for r in rows] == [("finished", "skipped")] * 3
    assert run_files.read_json(f"{root}/sweep.json")["sweep"] == "tiny"
    assert run_files.exists(f"{root}/best_lr.csv")
    name = rows[0]["name"]
    state = progress(f"{root}/{name}", sweep.base.train.steps)
    assert (state.finished, state.checkpoint) == (True, sweep.base.train.steps)
    assert state.record == {"status": "finished", "error": "", "traceback": "", "wall_s": 1.0}
    assert "3 finished" in capsys.readouterr().out


def test_train_log_of_a_url_workdir_is_appended_when_the_run_ends():
    """The executors' redirection of a run's output (file descriptors, so in a subprocess)."""
    code = "\n".join([
        "import sys",
        "from lm.sweep.executors import _output_to",
        "from lm.train import workdir as run_files",
        "path = 'memory://log/train.log'",
        "run_files.write_text(path, 'attempt 1\\n')",
        "with _output_to(path):",
        "    print('attempt 2', flush=True)",
        "sys.exit(run_files.read_text(path) != 'attempt 1\\nattempt 2\\n')"])
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert b"attempt 2" not in done.stdout
