"""data/prepare.py's worker pool: killing python -m data.prepare (even by kill -9) ends its
tokenizing workers, not leaves them running, reparented to init."""
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import REPO

# The parent runs prepare's real pool (_run_jobs with its initializer) on two jobs that mark
# their start and then work for a minute: _prepare_shard is swapped for _mark_and_work, which
# spawned workers import from this module.
PARENT = """
from data import prepare
from tests.data import test_prepare_workers
if __name__ == "__main__":
    prepare._prepare_shard = test_prepare_workers._mark_and_work
    list(prepare._run_jobs([{marks!r} + "/0", {marks!r} + "/1"], 2, "test"))
"""


def _mark_and_work(mark: str) -> None:
    """A job of a worker: writes `mark` (holding its pid), then runs for a minute."""
    Path(mark).write_text(str(os.getpid()))
    time.sleep(60)


@pytest.mark.slow
def test_prepare_workers_die_with_the_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(marks=str(tmp_path)))
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    marks = [tmp_path / "0", tmp_path / "1"]
    deadline = time.time() + 60
    while not all(mark.exists() and mark.read_text() for mark in marks):
        assert time.time() < deadline and parent.poll() is None
        time.sleep(0.1)
    workers = [psutil.Process(int(mark.read_text())) for mark in marks]
    parent.kill()  # kill -9: no cleanup code runs in the parent
    parent.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for worker in alive:
        worker.kill()
    assert not alive, f"workers {[w.pid for w in alive]} outlived python -m data.prepare"
