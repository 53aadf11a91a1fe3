"""data/fetch.py: a fetched corpus is checked against its manifest."""
import json

import pytest

from data import clients, corpora, documents, fetch


def test_an_edited_corpus_file_is_refused_against_its_manifest(tmp_path):
    directory = fetch.corpus_dir(tmp_path, "en_lit")  # as data.fetch leaves a fetched corpus
    directory.mkdir(parents=True)
    docs = directory / "docs.jsonl"
    docs.write_bytes(corpora.get("en_lit_sample").sample_file.read_bytes())
    (directory / "manifest.json").write_text(json.dumps(dict(
        corpus="en_lit", num_docs=len(list(documents.read(docs))), sha256=fetch.file_sha256(docs))))
    assert fetch.ensure_fetched(tmp_path, "en_lit")[0] == docs
    docs.write_text("")
    with pytest.raises(clients.FetchError, match=r"does not match the sha256 in its manifest"):
        fetch.ensure_fetched(tmp_path, "en_lit")
