"""data/needs.py: what a run's data settings need under a data root, checked without preparing
anything, and prepared all at once. memory:// stands in for a gs:// bucket (one store per
process, so everything runs in this process); the sources are the committed sample corpora.
"""
import json
import os
import shlex
import uuid

import pytest

from data import corpora, dataset, documents, needs, prepare, store
from data.settings import DATA

ALL_AT_ONCE = "python -m lm.train.prepare_data --config=C"


def settings(**fields):
    """A run's data settings (config.data) on the sample corpora."""
    d = DATA.config_dict()
    d.update(dict(corpus="en_docs_sample", eval_corpora=("en_docs_sample", "code_py_sample"),
                  tokenizer="byte", workers=1))
    d.update(fields)
    return d


@pytest.fixture
def bucket():
    root = f"memory://needs-{uuid.uuid4().hex}"
    yield root
    store.delete_tree(root)


def states(report):
    return [(item.role, item.name, item.state) for item in report.items]


def prepare_commands(text):
    return [line.strip() for line in text.splitlines()
            if line.strip().startswith("python -m data.prepare")]


def test_the_printed_commands_prepare_what_the_check_finds_missing(bucket):
    d = settings(tokenizer="bpe", vocab_size=300, tokenizer_corpora=("en_docs_sample",))
    report = needs.check(d, bucket)
    assert states(report) == [("tokenizer", "bpe300 on en_docs_sample", "MISSING"),
                              ("train+eval", "en_docs_sample", "MISSING"),
                              ("eval", "code_py_sample", "MISSING")]
    assert not list(store.list_keys(bucket))  # the check wrote nothing
    text = report.text(ALL_AT_ONCE)
    commands = prepare_commands(text)
    assert commands[0] == ("python -m data.prepare --corpus en_docs_sample --tokenizer bpe "
                           "--vocab_size 300 --tokenizer_corpora en_docs_sample "
                           f"--data_root {bucket}")
    assert len(commands) == 2 and text.endswith(f"or all at once:\n  {ALL_AT_ONCE}")
    for command in commands:  # each, as printed, with data.prepare's own command line
        assert prepare.main(shlex.split(command)[3:]) == 0
    report = needs.check(d, bucket)
    assert [state for _, _, state in states(report)] == ["ok"] * 3
    assert report.text(ALL_AT_ONCE).endswith("everything this config needs is prepared")
    # what a run prepares and opens is what the check found: the same tokenizer, the same paths
    opened = needs.prepare_all(d, bucket)
    assert [item.where for item in report.items[1:]] == [p.path for p in opened.values()]
    assert report.items[0].where.endswith(f"/tokenizers/{opened['en_docs_sample'].tokenizer}")


def test_prepare_all_prepares_the_training_mixture_and_every_validation_source(bucket):
    d = settings(mixture={"en_docs_sample": 0.5, "en_lit_sample": 0.5},
                 eval_corpora=("code_py_sample",))
    assert [(r, n) for r, n, _ in states(needs.check(d, bucket))] == [
        ("tokenizer", "byte"), ("train", "en_docs_sample"), ("train", "en_lit_sample"),
        ("eval", "code_py_sample")]
    needs.prepare_all(d, bucket)
    assert not needs.check(d, bucket).missing
    assert needs.check(settings(), bucket).missing == []  # a subset of what is there


def test_data_prepared_with_another_val_fraction_is_reported_with_its_fix(bucket):
    needs.prepare_all(settings(eval_corpora=("en_docs_sample",)), bucket)
    d = settings(eval_corpora=("en_docs_sample",), val_fraction=0.1)
    (item,) = needs.check(d, bucket).missing
    assert item.state == "MISSING" and "prepared with val_fraction=0.02, not 0.1" in item.where
    assert "--val_fraction 0.1" in item.command


def test_own_files_are_found_by_their_fingerprint_and_named_sources_need_the_config(
        bucket, tmp_path):
    texts = list(documents.read_texts(corpora.get("en_docs_sample").sample_file))[:40]
    documents_path = tmp_path / "web" / "a.jsonl"
    documents_path.parent.mkdir()
    documents_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    spec = f"jsonl:{tmp_path}/web/*.jsonl"
    d = settings(corpus=spec, eval_corpora=(spec,))
    (item,) = needs.check(d, bucket).missing
    assert item.command.startswith(f"python -m data.prepare --corpus {shlex.quote(spec)} ")
    needs.prepare_all(d, bucket)
    assert not needs.check(d, bucket).missing
    # a data.sources name names the prepared directory, which data.prepare cannot: only the
    # config's own command prepares it
    named = settings(sources={"mine": spec}, corpus="mine", eval_corpora=("mine",))
    report = needs.check(named, bucket)
    (item,) = report.missing
    assert item.name == "mine" and item.command is None
    assert prepare_commands(report.text(ALL_AT_ONCE)) == []
    assert report.text(ALL_AT_ONCE).endswith(f"):\n  {ALL_AT_ONCE}")
    needs.prepare_all(named, bucket)
    assert not needs.check(named, bucket).missing
    # appending a document changes the fingerprint: the data is missing again
    with open(documents_path, "a") as f:
        f.write('{"text": "one more document"}\n')
    assert [i.name for i in needs.check(d, bucket).missing] == [spec]


def test_a_bpe_over_corpora_not_fetched_here_is_unknown_and_nothing_is_fetched(tmp_path):
    """An unpinned registered corpus (the *_debian ones) has no fingerprint until fetched."""
    d = settings(tokenizer="bpe", tokenizer_corpora=("en_docs_debian", "code_py_sample"))
    report = needs.check(d, tmp_path)
    assert [state for _, _, state in states(report)] == ["UNKNOWN"] * 3
    assert f"python -m data.fetch en_docs_debian --data_root {tmp_path}" in report.items[0].where
    assert not (tmp_path / "corpora").exists()


def test_a_bpe_over_pinned_corpora_is_looked_for_without_fetching_them(tmp_path):
    """The default corpora's fingerprints are pinned in the code: the check looks the tokenizer
    up (here: not trained yet, so MISSING, not UNKNOWN) and fetches nothing."""
    d = settings(tokenizer="bpe", tokenizer_corpora=("en_docs", "code_py"))
    report = needs.check(d, tmp_path)
    assert report.items[0].state == "MISSING"
    assert not (tmp_path / "corpora").exists()


def test_settings_a_run_refuses_are_refused(bucket):
    with pytest.raises(ValueError, match="data.val_fraction=1.5"):
        needs.check(settings(val_fraction=1.5), bucket)
    with pytest.raises(ValueError, match="unknown corpus or source 'nope'"):
        needs.check(settings(corpus="nope"), bucket)
    with pytest.raises(ValueError, match="weights sum to 0"):
        needs.prepare_all(settings(mixture={"en_docs_sample": 0}), bucket)


def test_a_bucket_root_fetches_registered_corpora_to_a_local_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTISCALE_DATA_DIR", str(tmp_path))
    assert dataset.local_root("gs://bucket/data") == str(tmp_path)
    assert dataset.local_root("/elsewhere") == "/elsewhere"
    monkeypatch.setenv("OPTISCALE_DATA_DIR", "gs://bucket/data")
    assert dataset.local_root("gs://bucket/data") == os.path.expanduser("~/.cache/optiscale")
