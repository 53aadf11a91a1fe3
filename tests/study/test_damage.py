"""A study directory whose files are damaged (torn by a kill or a full disk, or edited): lm.study
prints one `error:` line naming the file and the fix and exits 2, never a traceback (issue 31)."""
import json

import pytest

from lm.study import cli, phases, presets


def _one_error_line(capsys, path, problem: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is damaged ({problem}") and err.count("\n") == 1, err


@pytest.mark.parametrize("text, problem", [
    (json.dumps({"preset": "tiny"})[:9], "JSONDecodeError"),               # torn mid-write
    (json.dumps({"settings": {}}), "it lacks the preset's name"),          # edited
])
def test_a_damaged_study_json_is_one_error_line(tmp_path, capsys, text, problem):
    path = tmp_path / "out" / phases.MANIFEST
    path.parent.mkdir()
    path.write_text(text)
    assert cli.main([f"--runs_dir={path.parent}", "--preset=tiny"]) == 2
    _one_error_line(capsys, path, problem)
    assert path.read_text() == text


def test_a_damaged_planned_json_is_one_error_line_in_a_dry_run(tmp_path, capsys):
    size = presets.get_preset("tiny").tune_sizes[0]
    path = tmp_path / "out" / "tune" / size / "planned.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"points": [{"size": "d4')
    assert cli.main([f"--runs_dir={tmp_path / 'out'}", "--preset=tiny", "--dry_run"]) == 2
    _one_error_line(capsys, path, "JSONDecodeError")
