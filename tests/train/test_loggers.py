"""lm/train/loggers.py: the metric writers of train.loggers. TensorBoard and W&B (offline)
hold the metrics.jsonl rows, a resume continues them, and a failing or missing writer neither
stops training nor lets a typo through."""
import glob
import json
import os
import struct
import sys

import numpy as np
import pytest

from lm import train
from lm.errors import ConfigError
from lm.train import loggers
from lm.train import workdir as run_files
from lm.train.metrics_log import read_metrics


def test_unknown_logger_is_refused_before_compiling(tiny_config, tmp_path):
    tiny_config.train.loggers = "jsonl,tensorbord"
    with pytest.raises(ConfigError, match=r"train.loggers has \['tensorbord'\]"):
        train.run(tiny_config, str(tmp_path / "run"))


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B in offline mode (no network, no account), quiet, its settings kept under tmp_path.
    wandb reads the environment and current directory once per process, so the test gets a
    fresh wandb session (teardown) before and after."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    wandb.teardown()
    yield
    wandb.teardown()


def wandb_records(path: str) -> list:
    """The Records of a .wandb file: a 7-byte header (":W&B", magic, version), then a LevelDB
    log of 32 KiB blocks whose chunks (crc32c, length, type: 1 full, 2 first, 3 middle, 4
    last) carry the protobufs; under 7 bytes left in a block are padding."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert struct.unpack_from("<4sH", data) == (b":W&B", 0xBEE1)
    records, payload, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:  # zeros past the last record
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        payload = chunk if kind in (1, 2) else payload + chunk
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(payload))
    return records


def wandb_legs(pattern: str) -> list[list]:
    """The Records of each .wandb file that `pattern` matches, in name (time) order, once
    wandb's service has written them: run.finish() may return before, teardown waits."""
    import wandb

    wandb.teardown()
    return [wandb_records(path) for path in sorted(glob.glob(pattern))]


def wandb_history(records: list) -> dict:
    """{step: {key: value}} of the history records."""
    history = {}
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                   for item in rec.history.item}
            history[row.pop("_step")] = row
    return history


@pytest.mark.slow
def test_tensorboard_and_wandb_hold_the_metrics_rows_and_a_resume_continues_them(
        tiny_config, tmp_path, wandb_offline):
    """TensorBoard's own reader sees every numeric field of every metrics.jsonl row at its
    step (as float32), and a resumed run's rewritten steps once. Each offline W&B leg carries
    the id kept in the workdir, the run's config and the rows that leg wrote (the resume
    lengthens the run, so its lr schedule and losses differ from step 6 on)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    workdir = str(tmp_path / "sweep" / "run")
    tiny_config.train.update(dict(steps=10, checkpoint_every=5, eval_every=5, log_every=2,
                                  loggers="jsonl,tensorboard,wandb"))
    tiny_config.schedule.warmup_steps = 1
    train.run(tiny_config, workdir)
    tiny_config.train.steps = 14
    os.rename(os.path.join(workdir, "checkpoints", "10"), str(tmp_path / "moved"))
    train.run(tiny_config, workdir)  # resumes from step 5: steps 6-14 are logged again
    rows = read_metrics(workdir)
    events = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "sweep")).Reload()
    [run] = events.Runs()  # tensorboard --logdir over a sweep root finds each run's tb/
    tags = events.Runs()[run]["scalars"]
    assert {"train/loss", "eval/en_docs_sample/loss", "time/step_s"} <= set(tags)
    for tag in ("train/loss", "eval/en_docs_sample/loss", "train/lr"):
        logged = {e.step: e.value for e in events.Scalars(run, tag)}
        expected = {r["step"]: r[tag] for r in rows if tag in r}
        assert sorted(logged) == sorted(expected), tag
        np.testing.assert_allclose([logged[s] for s in sorted(expected)],
                                   [expected[s] for s in sorted(expected)], rtol=1e-6)

    with open(os.path.join(workdir, "wandb_id.txt")) as f:
        run_id = f.read().strip()
    first, second = wandb_legs(os.path.join(workdir, "wandb", f"offline-run-*-{run_id}",
                                            f"run-{run_id}.wandb"))
    [run] = [rec.run for rec in first if rec.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.project, run.run_group, run.display_name) == (
        run_id, "optiscale", "sweep", "run")  # grouped by the workdir's parent, a sweep root
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["model"]["d_model"] == 32 and config["train"]["loggers"].endswith("wandb")
    with open(os.path.join(workdir, "metrics.jsonl.after_5")) as f:  # the first leg's 6-10
        first_rows = [r for r in rows if r["step"] <= 5] + [json.loads(line) for line in f]
    for leg, leg_rows in ((first, first_rows), (second, [r for r in rows if r["step"] > 5])):
        history = wandb_history(leg)
        for tag in ("train/loss", "eval/en_docs_sample/loss"):
            expected = {r["step"]: r[tag] for r in leg_rows if tag in r}
            logged = {step: row[tag] for step, row in history.items() if tag in row}
            assert sorted(logged) == sorted(expected) != [], tag
            np.testing.assert_allclose([logged[s] for s in sorted(expected)],
                                       [expected[s] for s in sorted(expected)], rtol=1e-6)


def test_wandb_on_a_url_workdir_keeps_its_id_there_and_its_files_in_the_current_directory(
        tiny_config, tmp_path, wandb_offline, monkeypatch):
    monkeypatch.chdir(tmp_path)
    workdir = f"memory://{tmp_path.name}/sweep/run"
    writer = loggers.WandB(workdir, tiny_config)
    writer.write({"step": 3, "train/loss": 0.5, "note": "not a number"})
    writer.close()
    run_id = run_files.read_text(f"{workdir}/wandb_id.txt").strip()
    assert loggers.run_id(workdir) == run_id  # what a resume uses
    [leg] = wandb_legs(str(tmp_path / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb"))
    history = wandb_history(leg)
    assert list(history) == [3] and history[3]["train/loss"] == 0.5 and "note" not in history[3]


@pytest.mark.slow
def test_a_failing_wandb_writer_warns_once_and_training_goes_on(tiny_config, tmp_path,
                                                                wandb_offline, monkeypatch):
    import wandb

    def refuse(**kwargs):
        raise RuntimeError("no W&B account")

    monkeypatch.setattr(wandb, "init", refuse)
    workdir = str(tmp_path / "run")
    tiny_config.train.update(dict(steps=6, checkpoint_every=6, eval_every=3, log_every=2,
                                  loggers="jsonl,wandb"))
    tiny_config.schedule.warmup_steps = 1
    with pytest.warns(UserWarning, match="the wandb writer failed") as caught:
        train.run(tiny_config, workdir)
    assert len([w for w in caught if "wandb" in str(w.message)]) == 1
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows] == [2, 3, 4, 6] and "eval/en_docs_sample/loss" in rows[-1]


def test_wandb_logger_without_wandb_is_refused_before_compiling(tiny_config, tmp_path,
                                                                monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    tiny_config.train.loggers = "jsonl,wandb"
    with pytest.raises(ConfigError, match=r'wandb is not installed .*pip install -e "\.\[wandb'):
        train.run(tiny_config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()
