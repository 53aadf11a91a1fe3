"""lm/train/cli.py (`python -m lm.train`): errors before training are messages, not
tracebacks, and a signal before the first step exits cleanly."""
import signal
import subprocess
import sys
import time

import pytest

from tests import REPO


def run_cli(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lm.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.slow
def test_errors_before_training_are_messages_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for args, message in (
            ([f"--config={bad}", f"--workdir={tmp_path / 'w'}"], "cannot be loaded: SyntaxError"),
            (["--config=configs/base.py:d999_l9", f"--workdir={tmp_path / 'w'}"],
             "unknown model size 'd999_l9'"),
            (["--config=configs/quickstart.py", f"--workdir={a_file}"],
             f"cannot use --workdir={a_file}"),
            (["--config=configs/quickstart.py", f"--workdir={tmp_path / 'w'}",
              "--config.optimizer.lr=inf"], "optimizer.lr=inf is not a finite number"),
            (["--config=configs/quickstart.py", f"--workdir={tmp_path / 'w'}",
              f"--config.data.root={a_file}", "--config.data.tokenizer=byte",
              "--config.data.corpus=en_docs_sample", "--config.data.eval_corpora=()"],
             "Not a directory")):
        proc = run_cli(args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_signal_before_the_first_step_exits_cleanly(tmp_path, data_root):
    workdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lm.train", "--config=configs/quickstart.py",
                             f"--workdir={workdir}", f"--config.data.root={data_root}",
                             "--config.data.tokenizer=byte", "--config.data.corpus=en_docs_sample",
                             "--config.data.eval_corpora=('en_docs_sample',)"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (workdir / "config.json").exists():  # written by build, before the compile
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and "Traceback" not in err, (out, err)
