"""What a run records about itself: provenance.json (versions, commit, devices; a new leg on a
resume in another environment), a jax.profiler trace of chosen steps, configs.help (every
config field with its default and comment), and the metric writers of train.loggers
(TensorBoard, W&B)."""
import ast
import glob
import json
import os
import re
import struct
import sys

import numpy as np
import pytest

from configs import base
from configs import help as config_help
from lm import profile, train
from lm.errors import ConfigError
from lm.train import loggers, provenance
from lm.train import workdir as run_files
from lm.train.metrics_log import read_metrics


def test_provenance_records_versions_commit_and_devices_once_per_environment(tiny_config,
                                                                          tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    tiny_config.train.update(dict(steps=4, checkpoint_every=2, eval_every=2))
    tiny_config.schedule.warmup_steps = 1
    train.run(tiny_config, workdir)
    with open(os.path.join(workdir, "provenance.json")) as f:
        [leg] = json.load(f)["legs"]
    assert leg["start_step"] == 0 and leg["backend"] == "cpu" and leg["device_count"] >= 1
    assert set(provenance.PACKAGES) <= set(leg["packages"]) and leg["packages"]["jax"]
    assert leg["process_count"] == 1 and leg["python"].count(".") == 2
    assert leg["git"] is None or len(leg["git"]["commit"]) == 40
    # A resume in the same environment adds nothing; in another one, a leg from its step
    tiny_config.train.steps = 6
    train.run(tiny_config, workdir)
    version = provenance._version
    monkeypatch.setattr(provenance, "_version",
                        lambda name: "9.9.9" if name == "jax" else version(name))
    tiny_config.train.steps = 8
    train.run(tiny_config, workdir)
    with open(os.path.join(workdir, "provenance.json")) as f:
        legs = json.load(f)["legs"]
    assert [leg["start_step"] for leg in legs] == [0, 6]
    assert legs[1]["packages"]["jax"] == "9.9.9" != legs[0]["packages"]["jax"]


def test_git_state_outside_a_checkout_is_none(tmp_path):
    assert provenance.git_state(str(tmp_path)) is None


def test_profile_steps_write_a_trace_of_those_steps(tiny_config, tmp_path):
    workdir = tmp_path / "run"
    tiny_config.train.update(dict(steps=6, profile_steps="3:4"))
    tiny_config.schedule.warmup_steps = 1
    train.run(tiny_config, str(workdir))
    traces = list((workdir / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    assert profile.newest_trace(str(workdir)) == str(traces[0])
    [host] = [p for p in profile.summarize(str(traces[0]), top=5) if p["plane"] == "/host:CPU"]
    assert len(host["ops"]) == 5 and host["span_ms"] > 0
    assert all(0 < op["self_ms"] <= op["total_ms"] + 1e-9 for op in host["ops"])
    assert not any(op["name"].startswith("$") for op in host["ops"])  # no Python frames
    assert profile.main([str(workdir), "--json", "--top=3"]) == 0


def test_profile_self_times_subtract_nested_events():
    # A (0-100) holds B (10-40), which holds C (20-30); D (50-60) sits in A; E (200-210) alone
    events = [(0, 100, "A"), (10, 30, "B"), (20, 10, "C"), (50, 10, "D"), (200, 10, "E"),
              (300, 5, "C")]
    own, total, count = profile.self_times(events)
    assert dict(own) == {"A": 60, "B": 20, "C": 15, "D": 10, "E": 10}
    assert total["C"] == 15 and count["C"] == 2 and total["A"] == 100


def test_profile_summary_without_a_trace_names_the_flag(tmp_path, capsys):
    assert profile.main([str(tmp_path)]) == 2
    assert "--config.train.profile_steps=FIRST:LAST" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [("3-4", "is not FIRST:LAST"),
                                           ("1:4", "2 <= FIRST <= LAST"),
                                           ("4:99", "LAST <= train.steps=20")])
def test_bad_profile_steps_are_refused_before_compiling(tiny_config, tmp_path, spec, message):
    tiny_config.train.profile_steps = spec
    with pytest.raises(ConfigError, match=message):
        train.run(tiny_config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_help_lists_every_field_with_its_comment(capsys):
    rows = config_help.rows(base.get_config(), config_help.field_comments())
    names = {name for name, _, _ in rows}
    documented = {name: comment for name, _, comment in rows if comment}
    assert {"model.d_model", "schedule.warmup_fraction", "train.profile_steps",
            "mesh.rules.batch", "optimizer.adamw.b2"} <= names
    missing = sorted(names - set(documented) - {n for n in names if n.startswith(
        "optimizer.groups.")})
    assert not missing, f"fields without a comment in configs/base.py: {missing}"
    assert "warm up over this fraction" in documented["schedule.warmup_fraction"]
    assert "Zhang et al. 2024" in documented["optimizer.weight_average_decay"]
    assert config_help.main(["--match=warmup"]) == 0
    out = capsys.readouterr().out
    assert "schedule.warmup_steps = 100" in out and "model.d_model" not in out
    assert config_help.main(["configs/quickstart.py", "--match=^train.steps"]) == 0
    assert "train.steps = " in capsys.readouterr().out


def test_constraints_pin_every_requirement_of_setup_py():
    """constraints.txt (the versions the suite passed with) covers every dependency."""
    root = str(REPO)
    setup = ast.parse(open(os.path.join(root, "setup.py")).read())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", "") == "setup")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
              if k.arg in ("install_requires", "extras_require")}
    required = kwargs["install_requires"] + kwargs["extras_require"]["test"]
    with open(os.path.join(root, "constraints.txt")) as f:
        pinned = {line.split("==")[0].lower().replace("_", "-") for line in f if "==" in line}
    names = {re.split(r"[<>=\[]", r)[0].lower().replace("_", "-") for r in required}
    assert names <= pinned, sorted(names - pinned)


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
