"""lm/train/workdir.py: one trainer per workdir (the lock that `held` takes)."""
import os
import subprocess
import sys

import pytest

from lm import train
from lm.errors import ConfigError
from tests import REPO

HOLD_LOCK = """
import sys, time
from lm.train import workdir
with workdir.held(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_trainer_on_a_workdir_is_refused_until_the_first_dies(short_config, tmp_path):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, workdir], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use by another trainer \(pid {holder.pid} "
                                              r"on .*\); wait for it"):
            train.run(short_config, workdir)
        assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    finally:
        holder.kill()  # kill -9: the kernel releases its lock
        holder.wait()
    assert train.run(short_config, workdir)["step"] == 10
