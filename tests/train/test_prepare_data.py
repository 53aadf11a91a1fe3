"""python -m lm.train.prepare_data: from a run config, check (nothing prepared, exit status 1
while anything is missing) and prepare everything its data root needs; and a multi-process
run's data, prepared by process 0 while the others wait. memory:// stands in for a gs://
bucket; it lives in one process, so the command runs in this one (its `main`)."""
import uuid

import jax
import pytest

from data import store
from lm.train import batches, distributed, prepare_data
from tests import REPO

CONFIG = f"--config={REPO / 'configs' / 'quickstart.py'}"


@pytest.fixture
def bucket():
    root = f"memory://prepare-data-{uuid.uuid4().hex}"
    yield root
    store.delete_tree(root)


def test_check_lists_what_is_missing_then_prepare_makes_it_all(bucket, capsys):
    argv = [CONFIG, f"--config.data.root={bucket}", "--config.data.corpus=en_docs_sample",
            "--config.data.eval_corpora=('en_docs_sample','code_py_sample')",
            "--config.data.tokenizer_corpora=('en_docs_sample',)", "--config.data.vocab_size=300"]
    assert prepare_data.main([*argv, "--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 3 and "3 of 3 not found" in out
    assert ("python -m data.prepare --corpus code_py_sample --tokenizer bpe --vocab_size 300 "
            f"--tokenizer_corpora en_docs_sample --data_root {bucket}") in out
    again = out.splitlines()[-1].strip()  # the same command, without --check
    assert again.startswith(f"python -m lm.train.prepare_data {CONFIG} ") and "--check" not in again
    assert not list(store.list_keys(bucket))  # the check prepared nothing

    assert prepare_data.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("train and") == 2 and "everything this config needs is prepared" in out
    assert prepare_data.main([*argv, "--check"]) == 0
    out = capsys.readouterr().out
    assert "MISSING" not in out and out.count(" ok ") == 3


def test_bad_settings_exit_2(bucket, capsys):
    assert prepare_data.main([CONFIG, f"--config.data.root={bucket}",
                              "--config.data.val_fraction=1.5", "--check"]) == 2
    assert "data.val_fraction=1.5" in capsys.readouterr().err
    assert prepare_data.main([CONFIG, "--config.data.corpora=x", "--check"]) == 2


@pytest.fixture
def processes(monkeypatch):
    """Makes this process look like process `index` of 2; returns the record of its calls."""
    calls = []

    def as_process(index, others_failed=False):
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        monkeypatch.setattr(jax, "process_index", lambda: index)
        monkeypatch.setattr(distributed, "any_process",
                            lambda flag: calls.append(("barrier", flag)) or flag or others_failed)
        return calls
    return as_process


@pytest.mark.parametrize("index, expected", [(0, ["prepare", ("barrier", False)]),
                                             (1, [("barrier", False)])])
def test_process_0_prepares_while_the_others_wait(processes, index, expected):
    calls = processes(index)
    batches.prepared_by_process_0(lambda: calls.append("prepare"))
    assert calls == expected


def test_a_failure_on_process_0_stops_every_process(processes):
    def fail():
        raise ValueError("unknown corpus or source 'nope'")
    processes(0)
    with pytest.raises(ValueError, match="unknown corpus"):
        batches.prepared_by_process_0(fail)
    calls = processes(1, others_failed=True)
    with pytest.raises(ValueError, match="process 0 could not prepare this run's data"):
        batches.prepared_by_process_0(fail)
    assert calls[-1] == ("barrier", False)  # process 1 prepared nothing itself


def test_one_process_prepares_nothing_before_it_opens_the_data():
    batches.prepared_by_process_0(lambda: pytest.fail("a single process prepares on open"))
