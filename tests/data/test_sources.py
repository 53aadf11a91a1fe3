"""Users' own corpora: jsonl / parquet / text / hf sources, streaming parallel resumable
preparation, Hugging Face tokenizers, weighted mixtures and the errors for bad input.

The sources are written in tmp_path from the committed sample corpora; nothing needs network.
"""
import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tokenizers as hf_tokenizers

from data import (
    corpora,
    dataset,
    documents,
    prepare,
    sampling,
    sources,
    split,
    store,
    tokenizer,
)
from tests import REPO


def sample_texts(name: str) -> list[str]:
    return list(documents.read_texts(corpora.get(name).sample_file))


def write_jsonl(path: Path, texts, field: str = "text") -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": i, field: text}) + "\n")


def expected_splits(texts: list[str], val_fraction: float = 0.02) -> dict:
    """The byte-tokenized arrays the old in-memory preparation made from `texts`."""
    mask = split.validation_mask(texts, val_fraction)
    arrays = {}
    for name, want in (("train", False), ("val", True)):
        docs = [np.append(np.frombuffer(t.encode(), np.uint8).astype(np.uint16), 256)
                for t, v in zip(texts, mask) if v == want]
        arrays[name] = np.concatenate(docs)
    return arrays


def arrays(prepared: dataset.PreparedCorpus) -> dict:
    return {s.name: np.asarray(s.tokens) for s in (prepared.train, prepared.val)}


@pytest.fixture(scope="module")
def user_corpora(tmp_path_factory):
    """The en_lit sample as jsonl (split over a plain and a gzipped file), code_py's as parquet
    (two row groups), en_docs' as text files, and en_lit's again as a saved HF dataset."""
    base = tmp_path_factory.mktemp("user")
    lit, code, docs = (sample_texts(f"{n}_sample") for n in ("en_lit", "code_py", "en_docs"))
    (base / "lit").mkdir()
    write_jsonl(base / "lit" / "a.jsonl", lit[:10])
    write_jsonl(base / "lit" / "b.jsonl.gz", lit[10:])
    (base / "code").mkdir()
    pq.write_table(pa.table({"content": code}), base / "code" / "part-0.parquet",
                   row_group_size=len(code) // 2 + 1)
    (base / "docs").mkdir()
    for i, text in enumerate(docs):
        (base / "docs" / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    import datasets
    datasets.Dataset.from_dict({"text": lit}).save_to_disk(str(base / "hf_lit"))
    (base / "hf_files").mkdir()  # a directory of data files: datasets.load_dataset reads it
    write_jsonl(base / "hf_files" / "train.jsonl", code)
    return dict(base=base, lit=lit, code=code, docs=docs,
                specs={"jsonl": f"jsonl:{base}/lit/*.jsonl*",
                       "parquet": f"parquet:{base}/code/*.parquet",
                       "text": f"text:{base}/docs/*.txt",
                       "hf": f"hf:{base}/hf_lit", "hf_files": f"hf:{base}/hf_files"})


@pytest.mark.parametrize("kind,texts,field", [("jsonl", "lit", "text"),
                                              ("parquet", "code", "content"),
                                              ("text", "docs", "text"), ("hf", "lit", "text"),
                                              ("hf_files", "code", "text")])
def test_each_kind_of_source_prepares_exactly_its_documents(user_corpora, tmp_path, kind, texts,
                                                            field, monkeypatch):
    import datasets
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    prepared = prepare.ensure_prepared(tmp_path, user_corpora["specs"][kind], text_field=field,
                                       workers=1, shard_bytes=16_000)
    want = expected_splits(user_corpora[texts])
    got = arrays(prepared)
    for name in ("train", "val"):
        np.testing.assert_array_equal(got[name], want[name])
    assert prepared.meta["source"] == user_corpora["specs"][kind]
    assert prepared.train.num_bytes == prepared.train.num_tokens  # bytes exact: byte tokenizer


def test_registered_corpus_arrays_do_not_depend_on_workers_or_shard_size(tmp_path):
    """The embedded corpora's arrays are the old in-memory preparation's, token for token."""
    want = expected_splits(sample_texts("en_docs_sample"))
    for workers, shard_bytes in ((1, 1 << 26), (2, 20_000)):
        root = tmp_path / f"w{workers}"
        got = arrays(prepare.ensure_prepared(root, "en_docs_sample", workers=workers,
                                             shard_bytes=shard_bytes))
        for name in ("train", "val"):
            np.testing.assert_array_equal(got[name], want[name])
    rel = Path("prepared", "byte", "en_docs_sample")
    for part in ("train.zarr", "val.zarr"):
        a, b = (sorted((tmp_path / w / rel / part).rglob("*")) for w in ("w1", "w2"))
        assert [p.read_bytes() for p in a if p.is_file()] == \
               [p.read_bytes() for p in b if p.is_file()]


@pytest.mark.parametrize("val_fraction", [1e-6, 0.999])
def test_a_split_left_empty_by_the_hash_rule_gets_the_nearest_document(tmp_path, val_fraction):
    texts = sample_texts("code_py_sample")[:6]
    path = tmp_path / "six.jsonl"
    write_jsonl(path, texts)
    prepared = prepare.ensure_prepared(tmp_path, f"jsonl:{path}", val_fraction=val_fraction,
                                       workers=1, shard_bytes=5_000)
    want = expected_splits(texts, val_fraction)
    for name, got in arrays(prepared).items():
        np.testing.assert_array_equal(got, want[name])
    assert {prepared.train.num_docs, prepared.val.num_docs} == {1, 5}


KILL_AFTER_TWO_SHARDS = """
import os, signal, sys
from data import prepare
real = prepare._prepare_shard
done = []
def prepare_then_die(job):
    record = real(job)
    done.append(record)
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return record
prepare._prepare_shard = prepare_then_die
prepare.ensure_prepared(sys.argv[1], sys.argv[2], workers=1, shard_bytes=20_000)
"""


def test_a_killed_preparation_restarts_with_the_unfinished_shards_only(user_corpora, tmp_path,
                                                                       capsys):
    spec = user_corpora["specs"]["jsonl"]
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_SHARDS, str(tmp_path), spec],
                          cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with pytest.raises(FileNotFoundError):  # no meta.json: nothing a run would read
        source = sources.resolve(spec)
        dataset.open_prepared(tmp_path, prepare.prepared_name(
            source, sources.fingerprint(source, tmp_path)), "byte")
    prepared = prepare.ensure_prepared(tmp_path, spec, workers=1, shard_bytes=20_000)
    assert "2 of " in capsys.readouterr().out
    want = expected_splits(user_corpora["lit"])
    for name, got in arrays(prepared).items():
        np.testing.assert_array_equal(got, want[name])


def test_a_changed_input_is_prepared_afresh(tmp_path):
    path = tmp_path / "c.jsonl"
    texts = sample_texts("code_py_sample")
    write_jsonl(path, texts[:8])
    first = prepare.ensure_prepared(tmp_path, f"jsonl:{path}", workers=1)
    time.sleep(0.01)
    write_jsonl(path, texts)
    second = prepare.ensure_prepared(tmp_path, f"jsonl:{path}", workers=1)
    assert first.path != second.path
    assert second.train.num_docs + second.val.num_docs == len(texts)


def test_memory_stores_stand_in_for_buckets(tmp_path):
    """Source files on fsspec's memory://, prepared data on TensorStore's memory kvstore."""
    texts = sample_texts("en_lit_sample")
    with fsspec.open("memory://bucket/corpus/a.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    prepared = prepare.ensure_prepared("memory://root", "jsonl:memory://bucket/corpus/*.jsonl",
                                       shard_bytes=50_000)
    assert prepared.path.startswith("memory://root/prepared/byte/corpus-")
    want = expected_splits(texts)
    for name, got in arrays(prepared).items():
        np.testing.assert_array_equal(got, want[name])


def test_hf_tokenizer_from_a_directory(tmp_path):
    hf = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE(unk_token="<unk>"))
    hf.pre_tokenizer = hf_tokenizers.pre_tokenizers.Whitespace()
    trainer = hf_tokenizers.trainers.BpeTrainer(vocab_size=400,
                                                special_tokens=["<unk>", "<s>", "</s>"])
    hf.train_from_iterator([sample_texts("en_lit_sample")], trainer)
    (tmp_path / "tok").mkdir()
    hf.save(str(tmp_path / "tok" / "tokenizer.json"))
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    prepared = prepare.ensure_prepared(tmp_path, "en_lit_sample",
                                       tokenizer=f"hf:{tmp_path}/tok", workers=1)
    assert prepared.tokenizer.startswith("hf-") and prepared.eos_id == hf.token_to_id("</s>")
    assert prepared.vocab_size == tokenizer.planned_vocab_size(f"hf:{tmp_path}/tok", 0)
    texts = sample_texts("en_lit_sample")
    mask = split.validation_mask(texts, 0.02)
    val = [t for t, v in zip(texts, mask) if v]
    # bits per byte stay exact: the bytes are the documents' own, whatever the tokenizer
    assert prepared.val.num_bytes == sum(len(t.encode()) + 1 for t in val)
    assert prepared.val.num_tokens == sum(len(hf.encode(t, add_special_tokens=False).ids) + 1
                                          for t in val)


# --- mixtures --------------------------------------------------------------------------------


def counting_split(n: int, offset: int) -> dataset.Split:
    tokens = np.arange(offset, offset + n, dtype=np.uint32)
    return dataset.Split(f"c{offset}", "train", tokens, 1, n, n)


def test_mixture_batch_is_a_pure_function_with_the_given_proportions():
    a, b = counting_split(10_000, 0), counting_split(10_000, 1_000_000)
    kwargs = dict(seed=3, batch_size=64, seq_len=8)
    batches = [sampling.mixture_batch([a, b], [0.7, 0.3], step=s, **kwargs) for s in range(50)]
    again = sampling.mixture_batch([a, b], [0.7, 0.3], step=7, **kwargs)
    np.testing.assert_array_equal(batches[7], again)
    from_b = np.mean([row[0] >= 1_000_000 for batch in batches for row in batch])
    assert 0.25 < from_b < 0.35
    halves = [sampling.mixture_batch([a, b], [0.7, 0.3], step=7, process_index=p,
                                     process_count=2, **kwargs) for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate(halves), again)
    single = sampling.mixture_batch([a], [1.0], step=7, **kwargs)
    np.testing.assert_array_equal(single, sampling.train_batch(a, step=7, **kwargs))


# --- bad input -------------------------------------------------------------------------------


def test_bad_sources_name_the_file_and_the_fix(tmp_path):
    def fails(spec, match, **kwargs):
        with pytest.raises(ValueError, match=match):
            prepare.ensure_prepared(tmp_path / "root", spec, workers=1, **kwargs)

    fails(f"jsonl:{tmp_path}/none/*.jsonl", "matches no file")
    fails("nosuch", "unknown corpus or source 'nosuch'")
    write_jsonl(tmp_path / "f.jsonl", ["one document", "another"], field="body")
    fails(f"jsonl:{tmp_path}/f.jsonl", r"f.jsonl at byte 0: no field 'text' \(found: id, body\)")
    write_jsonl(tmp_path / "e.jsonl", ["one document", ""])
    fails(f"jsonl:{tmp_path}/e.jsonl", r"e.jsonl at byte \d+: empty document")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    fails(f"text:{tmp_path}/latin1.txt", "latin1.txt: not UTF-8")
    pq.write_table(pa.table({"body": ["x", "y"]}), tmp_path / "p.parquet")
    fails(f"parquet:{tmp_path}/p.parquet", r"no column 'text' \(columns: body\)")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    fails(f"parquet:{tmp_path}/broken.parquet", "not a readable parquet file")
    fails("en_docs_sample", "no tokenizer.json there", tokenizer=f"hf:{tmp_path}")
    with pytest.raises(ValueError, match="both named 'f'"):
        sources.resolve_all([f"jsonl:{tmp_path}/f.jsonl", f"text:{tmp_path}/f.txt"])
    with pytest.raises(ValueError, match="also a registered corpus"):
        sources.resolve("x", {"code_py": "jsonl:a.jsonl"})


def test_damaged_prepared_array_is_refused_with_the_fix(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "code_py_sample", workers=1)
    shard = next(p for p in Path(prepared.path, "val.zarr").rglob("*") if p.name == "0")
    shard.write_bytes(shard.read_bytes()[:-40] + b"\0" * 40)
    with pytest.raises(ValueError, match=r"val.zarr is damaged .*delete .* and prepare it again"):
        dataset.open_prepared(tmp_path, "code_py_sample", "byte")


def test_store_round_trips_on_the_memory_kvstore():
    tokens = np.arange(store.SHARD + 5, dtype=np.uint32) % 50_000
    writer = store.TokenWriter("memory://t/a.zarr", len(tokens), tokens.dtype)
    writer.append(tokens)
    writer.close()
    np.testing.assert_array_equal(store.open_tokens("memory://t/a.zarr").read().result(), tokens)
    store.write_json("memory://t/x/meta.json", {"a": 1})
    assert store.read_json("memory://t/x/meta.json") == {"a": 1}
    assert sorted(store.list_keys("memory://t/x")) == ["meta.json"]
    store.delete_tree("memory://t/x")
    assert store.read_json("memory://t/x/meta.json") is None
