"""A sweep root whose files are damaged (torn by a kill or a full disk, or edited): lm.sweep,
--dry_run included, prints one `error:` line naming the file and the fix and exits 2, never a
traceback (issue 31)."""
import json

import pytest

from lm.sweep import cli as sweep_cli
from tests.sweep.test_sweep import TINY, forbid_training

OWNER = json.dumps({"sweep": "tiny", "config": TINY})
ROW = json.dumps({"step": 4, "tokens": 1024, "flops": 1.0}) + "\n"


@pytest.mark.parametrize("name, text, problem", [
    ("sweep.json", OWNER[:20], "JSONDecodeError"),                     # torn mid-write
    ("sweep.json", json.dumps({"runs": []}), "it lacks the sweep's name"),  # edited
    ("lr=0.01/metrics.jsonl", ROW + "{oops}\n" + ROW, "line 2 is not a JSON object"),
    ("lr=0.01/sweep_run.json", '{"status": "fai', "JSONDecodeError"),
])
@pytest.mark.parametrize("dry_run", [["--dry_run"], []])
def test_a_damaged_file_of_the_root_is_one_error_line(tmp_path, monkeypatch, capsys, name,
                                                      text, problem, dry_run):
    forbid_training(monkeypatch)
    root = tmp_path / "root"
    (root / "lr=0.01").mkdir(parents=True)
    (root / "sweep.json").write_text(OWNER)
    (root / "lr=0.01" / "metrics.jsonl").write_text(ROW)
    (root / name).write_text(text)
    assert sweep_cli.main([f"--sweep={TINY}", f"--runs_dir={root}", *dry_run]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {root / name} is damaged ({problem}") and err.count("\n") == 1
    assert (root / name).read_text() == text  # left as it was, for the user to repair
