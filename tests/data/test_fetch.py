"""data/fetch.py: a fetched corpus is checked against its manifest and against the sha256 its
registry entry pins; another version fetched under the same name is set aside, never lost."""
import dataclasses
import json
from pathlib import Path

import pytest

from data import clients, corpora, documents, fetch
from data.documents import Document


def fake_fetched(root, name: str, text_source: str) -> tuple:
    """Writes ROOT/corpora/NAME as data.fetch leaves it, with a committed sample's documents."""
    directory = fetch.corpus_dir(root, name)
    directory.mkdir(parents=True)
    docs = directory / "docs.jsonl"
    docs.write_bytes(corpora.get(text_source).sample_file.read_bytes())
    (directory / "manifest.json").write_text(json.dumps(dict(
        corpus=name, num_docs=len(list(documents.read(docs))), sha256=fetch.file_sha256(docs))))
    return directory, docs


def test_an_edited_corpus_file_is_refused_against_its_manifest(tmp_path):
    _, docs = fake_fetched(tmp_path, "en_docs_debian", "en_docs_sample")  # not pinned
    assert fetch.ensure_fetched(tmp_path, "en_docs_debian")[0] == docs
    docs.write_text("")
    with pytest.raises(clients.FetchError, match=r"does not match the sha256 in its manifest"):
        fetch.ensure_fetched(tmp_path, "en_docs_debian")


def with_corpus(monkeypatch, corpus: corpora.Corpus) -> None:
    monkeypatch.setitem(corpora.CORPORA, corpus.name, corpus)


def offline_corpus(sha256: str) -> corpora.Corpus:
    """en_lit built from its committed sample instead of downloaded archives."""
    sample = corpora.get("en_lit_sample").sample_file
    return dataclasses.replace(corpora.get("en_lit"), packages=(), sha256=sha256,
                               extract=lambda raw: documents.read(sample))


def test_a_build_that_misses_its_pinned_sha256_is_refused_and_not_kept(tmp_path, monkeypatch):
    with_corpus(monkeypatch, offline_corpus("0" * 64))
    with pytest.raises(clients.FetchError, match=r"has sha256 [0-9a-f]{64}, not the 0{64} "
                                                 r"pinned in data/corpora.py"):
        fetch.ensure_fetched(tmp_path, "en_lit")
    assert not fetch.corpus_dir(tmp_path, "en_lit").exists()
    assert [p.name for p in (tmp_path / "corpora").iterdir()] == [".en_lit.lock"]


def test_another_version_under_a_pinned_name_is_set_aside_and_the_pinned_one_fetched(
        tmp_path, monkeypatch, capsys):
    """A corpus fetched under a pinned name with other contents (the Debian-built en_docs of
    earlier versions) moves to NAME.<sha12>, kept whole, and the pinned corpus takes its place."""
    old_dir, old_docs = fake_fetched(tmp_path, "en_lit", "code_py_sample")
    old_bytes, old_sha = old_docs.read_bytes(), fetch.file_sha256(old_docs)
    sample = corpora.get("en_lit_sample").sample_file
    expected = fetch._unique_nonempty(documents.read(sample), dict(empty=0, duplicate=0))
    pinned_file = tmp_path / "pinned.jsonl"
    documents.write(pinned_file, [Document(d.source, d.text) for d in expected])
    with_corpus(monkeypatch, offline_corpus(fetch.file_sha256(pinned_file)))
    path, manifest = fetch.ensure_fetched(tmp_path, "en_lit")
    assert manifest["sha256"] == corpora.get("en_lit").sha256
    aside = old_dir.with_name(f"en_lit.{old_sha[:12]}")
    assert (aside / "docs.jsonl").read_bytes() == old_bytes
    assert f"moved it to {aside}" in capsys.readouterr().err
    assert fetch.ensure_fetched(tmp_path, "en_lit")[0] == path  # the pinned one now stays


def test_arrays_prepared_from_another_version_of_a_pinned_corpus_are_set_aside_or_refused(
        tmp_path, monkeypatch, capsys):
    """Prepared arrays record their corpus's sha256. Arrays of another version than the pinned
    one (the Debian-built en_docs of earlier versions) move, on a local root, to
    PATH.<their sha12> and the pinned corpus is prepared in their place; on a bucket (memory://
    here) they are refused rather than read as the pinned corpus."""
    from data import prepare, store
    monkeypatch.setenv("OPTISCALE_DATA_DIR", str(tmp_path / "cache"))  # memory://'s fetch cache
    with_corpus(monkeypatch, offline_corpus(""))
    pinned = fetch.ensure_fetched(tmp_path / "cache", "en_lit")[1]["sha256"]
    with_corpus(monkeypatch, offline_corpus(pinned))
    roots = (str(tmp_path / "root"), "memory://pinned-test")
    for root in roots:  # arrays of another version: as prepared, with another corpus sha256
        old = prepare.ensure_prepared(root, "en_lit", tokenizer="byte", workers=1)
        store.write_json(store.join(old.path, "meta.json"), dict(old.meta, corpus_sha256="0" * 64))
    with pytest.raises(ValueError, match=r"prepared from another version of corpus 'en_lit' "
                                         r"\(sha256 0{12}, now [0-9a-f]{12}\): delete .* to "
                                         r"prepare again"):
        prepare.ensure_prepared(roots[1], "en_lit", tokenizer="byte", workers=1)
    new = prepare.ensure_prepared(roots[0], "en_lit", tokenizer="byte", workers=1)
    assert new.meta["corpus_sha256"] == pinned
    aside = Path(f"{new.path}.{'0' * 12}")
    assert json.loads((aside / "meta.json").read_text())["corpus_sha256"] == "0" * 64
    assert f"moved it to {aside}" in capsys.readouterr().err
