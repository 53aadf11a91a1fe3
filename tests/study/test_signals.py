"""One lm.study per directory (a second is refused naming the holder; a dry run still lists),
a --runs_dir that is a file is one error line, and SIGTERM stops the whole study: the running
run saves a checkpoint, the study records it stopped, trains nothing more and exits 0."""
import json
import os
import signal

import pytest

from lm.study import cli, presets
from tests.study.test_study import _micro_preset
from tests.sweep.test_concurrency import hold
from tests.sweep.test_sweep import sigterm_at_step


def test_a_second_study_on_a_held_directory_is_refused_but_a_dry_run_lists(tmp_path, capsys):
    out = tmp_path / "study"
    holder = hold(out, "study")
    try:
        assert cli.main([f"--runs_dir={out}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: runs_dir {out} is in use by another study "
                              f"(pid {holder.pid} on ")
        assert err.count("\n") == 1
        assert os.listdir(out) == [".lock"]
        assert cli.main([f"--runs_dir={out}", "--dry_run"]) == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_runs_dir_that_is_a_file_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("")
    for dry_run in ([], ["--dry_run"]):
        assert cli.main([f"--out={path}", *dry_run]) == 2
        assert capsys.readouterr().err == (f"error: --runs_dir={path} is a file, not a "
                                           "directory; give a new or existing directory as "
                                           "--runs_dir\n")


def _one_size(name):
    """The miniature compare study (tests/study/test_study.py) tuning one size."""
    preset = _micro_preset(name)
    preset.tune_sizes = preset.seed_sizes = preset.budget_sizes = ["d32_l2"]
    return preset


@pytest.mark.slow
def test_sigterm_stops_the_whole_study_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    sigterm_at_step(monkeypatch, 10)
    monkeypatch.setattr(presets, "get_preset", _one_size)
    out = tmp_path / "study"
    assert cli.main([f"--runs_dir={out}", "--preset=compare"]) == 0
    assert "rerun the same command to resume it" in capsys.readouterr().err
    root = out / "tune" / "d32_l2"
    started = [d for d in os.listdir(root) if os.path.isdir(root / d / "checkpoints")]
    assert len(started) == 1  # the stopped run; nothing trained after the signal
    with open(root / started[0] / "sweep_run.json") as f:
        assert json.load(f)["status"] == "stopped"
    assert not os.path.exists(out / "final")
