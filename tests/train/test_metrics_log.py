"""lm/train/metrics_log.py: metrics.jsonl rows, a torn last line set aside on resume."""
import os

import pytest

from lm import train
from lm.train.metrics_log import read_metrics


@pytest.mark.slow
def test_a_torn_last_metrics_line_is_set_aside_on_resume(short_config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train.run(short_config, workdir)
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 11, "tokens": 2')  # a kill or a full disk mid-write
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10]  # readers skip it
    short_config.train.steps = 15
    assert train.run(short_config, workdir)["step"] == 15
    assert "(the last one torn) moved to" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10, 15]
    assert open(path + ".after_10").read() == '{"step": 11, "tokens": 2\n'
