"""What a run records about itself: provenance.json (versions, commit, devices; a new leg on a
resume in another environment), a jax.profiler trace of chosen steps, and configs.help (every
config field with its default and comment)."""
import ast
import json
import os
import re

import numpy as np
import pytest

from configs import base
from configs import help as config_help
from lm import train
from lm.errors import ConfigError
from lm.train import provenance
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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def test_tensorboard_events_hold_the_metrics_rows_and_a_resume_replaces_them(tiny_config,
                                                                            tmp_path):
    """TensorBoard's own reader sees every numeric field of every metrics.jsonl row at its
    step (as float32), and a resumed run's rewritten steps once."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    workdir = str(tmp_path / "sweep" / "run")
    tiny_config.train.update(dict(steps=10, checkpoint_every=5, eval_every=5, log_every=2,
                                  loggers="jsonl,tensorboard"))
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


def test_unknown_logger_is_refused_before_compiling(tiny_config, tmp_path):
    tiny_config.train.loggers = "jsonl,tensorbord"
    with pytest.raises(ConfigError, match=r"train.loggers has \['tensorbord'\]"):
        train.run(tiny_config, str(tmp_path / "run"))
