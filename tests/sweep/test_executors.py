"""lm/sweep/executors.py: a child killed from outside is reported with its signal, and the
children die with the sweep."""
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from lm.sweep.executors import LocalProcesses, Task
from tests import REPO


@pytest.mark.slow
def test_a_killed_sweep_child_is_reported_with_its_signal(short_config, tmp_path):
    short_config.train.update(dict(steps=100000, eval_every=100000))  # killed long before
    task = Task("run", short_config, str(tmp_path / "run"))
    results = []
    runner = threading.Thread(target=lambda: results.extend(
        LocalProcesses(1).run([task], threading.Event())), daemon=True)
    runner.start()
    deadline = time.time() + 120
    while not (tmp_path / "run" / "metrics.jsonl").exists():
        assert time.time() < deadline and runner.is_alive()
        time.sleep(0.2)
    (child,) = [p for p in psutil.Process().children()
                if "resource_tracker" not in " ".join(p.cmdline())]
    child.kill()  # as the out-of-memory killer would
    runner.join(timeout=60)
    (_, outcome), = results
    assert outcome["status"] == "failed" and "exit code -9" in outcome["error"], outcome


DIES_WITH_ITS_PARENT = """
import multiprocessing, os, sys, time
from lm.sweep import executors
def child(parent):
    executors._die_with_parent(parent)
    time.sleep(600)
if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_sweep_children_die_with_the_sweep(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(DIES_WITH_ITS_PARENT)
    # A script's own directory, not the working directory, heads sys.path: PYTHONPATH finds
    # the project.
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.0)  # the child has asked for the parent-death signal
    parent.kill()  # kill -9: no cleanup code runs in the parent
    parent.wait()
    child.wait(timeout=30)
    assert not child.is_running()
