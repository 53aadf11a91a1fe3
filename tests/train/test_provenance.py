"""lm/train/provenance.py: provenance.json records versions, commit and devices, one leg per
environment a run resumes in."""
import json
import os

import pytest

from lm import train
from lm.train import provenance


@pytest.mark.slow
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
