"""One lm.sweep per root: a second one is refused naming the holder (and a killed holder frees
the root); a run whose workdir another trainer holds is left as it was, not recorded failed; a
--runs_dir that is a file is one error line."""
import csv
import os
import signal
import subprocess
import sys

from lm import train
from lm.sweep import cli as sweep_cli
from lm.train import workdir as run_files
from tests import REPO
from tests.sweep.test_sweep import TINY, forbid_training, run, tiny_sweep

HOLD = ("import sys, time\n"
        "from lm.train import workdir\n"
        "lock = workdir.held(sys.argv[1], sys.argv[2], '--runs_dir')\n"
        "lock.__enter__()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")


def hold(directory, user: str) -> subprocess.Popen:
    """A process that holds `directory` as lm.sweep / lm.study does, until it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), user], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_sweep_on_a_held_root_is_refused_until_the_holder_dies(
        data_root, tmp_path, monkeypatch, capsys):
    forbid_training(monkeypatch)
    root = tmp_path / "root"
    holder = hold(root, "sweep")
    try:
        assert sweep_cli.main([f"--sweep={TINY}", f"--runs_dir={root}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: runs_dir {root} is in use by another sweep "
                              f"(pid {holder.pid} on ")
        assert err.count("\n") == 1
        assert not os.path.exists(root / "sweep.json")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_files.held(str(root), "sweep", "--runs_dir"):  # kill -9 released it
        pass


def test_a_run_another_trainer_holds_is_left_as_it_was_not_failed(data_root, tmp_path,
                                                                  monkeypatch, capsys):
    def busy(config, workdir):
        raise run_files.InUse(f"workdir {workdir} is in use by another trainer (pid 1)")
    monkeypatch.setattr(train, "run", busy)
    root = tmp_path / "root"
    assert run(tiny_sweep(data_root), root) == 0
    with open(root / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["status"], r["action"]) for r in rows} == {("pending", "busy")}
    assert not any(os.path.exists(root / r["name"] / run_files.SWEEP_RECORD) for r in rows)
    assert "left as it is: workdir" in capsys.readouterr().out


def test_a_runs_dir_that_is_a_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    forbid_training(monkeypatch)
    path = tmp_path / "file"
    path.write_text("")
    for dry_run in ([], ["--dry_run"]):
        assert sweep_cli.main([f"--sweep={TINY}", f"--runs_dir={path}", *dry_run]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: --runs_dir: --runs_dir={path} is a file, not a directory; give "
                       "a new or existing directory as --runs_dir\n")
