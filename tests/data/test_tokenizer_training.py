"""The bpe tokenizer trained on any source (data.tokenizer_corpora, `python -m data.tokenizer
train`): jsonl / text / parquet / hf sources and mixtures of them, a sample of bounded size of
training documents only, chosen by content, the recipe that finds a trained tokenizer again, and
the refusals of bad input. Sources are written in tmp_path; nothing needs network.
"""
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import bpe_training, corpora, documents, prepare, split, tokenizer
from tests import REPO

MIB = 2 ** 20
WORDS = ("the of and to in is that for it as with was on be by this are from at or an have not "
         "which but all were when we there can been has more if will one would so what out up "
         "its about into than them only other new some could time these two may then first any "
         "like now my such make over our even most me state after also made many did must "
         "before back see through way where get much go well your know should down work year "
         "because come people just say each those take day good how long own too little use "
         "tensor shard token merge vocabulary corpus gradient optimizer").split()


def sample_texts(name: str) -> list[str]:
    return list(documents.read_texts(corpora.get(name).sample_file))


def write_jsonl(path: Path, texts, field: str = "text") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({field: text}, ensure_ascii=False) + "\n")


def generated(num_docs: int, seed: int = 0) -> list[str]:
    """Distinct documents of 200 to 2000 random words."""
    rng = random.Random(seed)
    return [f"document {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(200, 2000)))
            for i in range(num_docs)]


def train_split(texts: list[str], val_fraction: float = 0.02) -> list[str]:
    return [t for t, v in zip(texts, split.validation_mask(texts, val_fraction)) if not v]


@pytest.fixture
def fed(monkeypatch):
    """The documents each training of a BPE is given (the real training still runs)."""
    calls = []

    def recording(batches, vocab_size):
        calls.append([])
        for batch in batches:
            calls[-1] += batch
        return tokenizer.train_bpe([calls[-1]], vocab_size)

    monkeypatch.setattr(bpe_training, "train_bpe", recording)
    return calls


def recipe(root, tok) -> dict:
    """The one recipe stored with tokenizer `tok`."""
    (path,) = (Path(root) / "tokenizers" / tok.name / "recipes").glob("*.json")
    return json.loads(path.read_text())


# --- sources of every kind ---------------------------------------------------------------------


def user_source(base: Path, kind: str, texts: list[str]) -> str:
    """`texts` written as a source of `kind`; its spec."""
    if kind == "jsonl":
        write_jsonl(base / "a.jsonl", texts[:7])
        write_jsonl(base / "b.jsonl", texts[7:])
        return f"jsonl:{base}/*.jsonl"
    if kind == "parquet":
        base.mkdir(parents=True)
        pq.write_table(pa.table({"body": texts}), base / "part.parquet", row_group_size=9)
        return f"parquet:{base}/*.parquet"
    if kind == "text":
        base.mkdir(parents=True)
        for i, text in enumerate(texts):
            (base / f"{i:03d}.txt").write_text(text, encoding="utf-8")
        return f"text:{base}/*.txt"
    import datasets
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(str(base))
    return f"hf:{base}"


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "text", "hf"])
def test_bpe_trains_on_the_training_split_of_any_source(tmp_path, kind, fed):
    texts = sample_texts("en_lit_sample")
    spec = user_source(tmp_path / "src", kind, texts)
    field = "text" if kind in ("jsonl", "text") else "body"
    tok = prepare.ensure_tokenizer(tmp_path / "root", "bpe", vocab_size=400,
                                   tokenizer_corpora=(spec,), text_field=field)
    # a source under the sample size is used whole: its training split, no validation document
    assert sorted(fed[0]) == sorted(train_split(texts))
    assert tok.name == tokenizer.bpe_id(400, tokenizer.train_bpe([train_split(texts)], 400))
    (entry,) = recipe(tmp_path / "root", tok)["inputs"]
    assert entry["source"] == spec and entry["docs"] == entry["train_docs"] == len(fed[0])
    probe = sample_texts("en_docs_sample")[:2]
    assert [tok.decode(ids) for ids in tok.encode_batch(probe)] == probe


def test_a_named_source_trains_the_tokenizer_of_a_preparation(tmp_path):
    texts = sample_texts("en_lit_sample")
    write_jsonl(tmp_path / "lit.jsonl", texts)
    prepared = prepare.ensure_prepared(tmp_path / "root", "code_py_sample", tokenizer="bpe",
                                       vocab_size=300, tokenizer_corpora=("lit",),
                                       named_sources={"lit": f"jsonl:{tmp_path}/lit.jsonl"},
                                       workers=1)
    tok = tokenizer.load_tokenizer(tmp_path / "root", prepared.tokenizer)
    assert recipe(tmp_path / "root", tok)["inputs"][0]["source"] == f"jsonl:{tmp_path}/lit.jsonl"
    # bits per byte stay exact: the bytes counted are the documents' own
    docs = tok.decode(np.asarray(prepared.val.tokens).tolist()).split(tokenizer.EOS_TEXT)[:-1]
    assert prepared.val.num_bytes == sum(len(d.encode()) + 1 for d in docs)


def test_a_mixture_shares_the_sample_equally_smallest_source_first(tmp_path, fed):
    small, large = generated(20, seed=1), generated(400, seed=2)
    write_jsonl(tmp_path / "small.jsonl", small)
    pq.write_table(pa.table({"text": large}), tmp_path / "large.parquet", row_group_size=50)
    specs = (f"parquet:{tmp_path}/large.parquet", f"jsonl:{tmp_path}/small.jsonl")
    budget = 0.5  # MiB: more than twice the small source, a fraction of the large one
    tok = prepare.ensure_tokenizer(tmp_path, "bpe", vocab_size=300, tokenizer_corpora=specs,
                                   tokenizer_sample_mb=budget)
    first, second = recipe(tmp_path, tok)["inputs"]
    assert first["source"] == specs[1] and first["docs"] == first["train_docs"]  # whole
    assert first["share"] == int(budget * MIB) // 2
    assert second["share"] == int(budget * MIB) - first["bytes"]  # gets what the small one left
    largest = max(len(t.encode()) for t in large)
    assert second["share"] - largest < second["bytes"] <= second["share"]  # full, to a document
    assert second["docs"] < second["train_docs"]
    assert sum(len(t.encode()) for t in fed[0]) == first["bytes"] + second["bytes"]
    assert set(train_split(small)) <= set(fed[0])
    # the order the sources are named in changes nothing
    again = prepare.ensure_tokenizer(tmp_path, "bpe", vocab_size=300,
                                     tokenizer_corpora=specs[::-1], tokenizer_sample_mb=budget)
    assert again.name == tok.name and len(fed) == 1


# --- the sample --------------------------------------------------------------------------------


def test_the_sample_stops_at_its_size_and_depends_on_the_documents_only(tmp_path, fed):
    texts = generated(600)  # about 4.7 MiB, several times the sample
    write_jsonl(tmp_path / "a" / "big.jsonl", texts)
    sample_mb = 0.75
    kwargs = dict(vocab_size=300, tokenizer_sample_mb=sample_mb)
    tok = prepare.ensure_tokenizer(tmp_path / "r1", "bpe",
                                   tokenizer_corpora=(f"jsonl:{tmp_path}/a/big.jsonl",), **kwargs)
    budget = int(sample_mb * MIB)
    fed_bytes = sum(len(t.encode()) for t in fed[0])
    assert budget - max(len(t.encode()) for t in texts) < fed_bytes <= budget
    # the training documents with the smallest content hashes, as many as fit
    train = sorted(train_split(texts), key=split.document_key)
    sizes = np.cumsum([len(t.encode()) for t in train])
    assert sorted(fed[0], key=split.document_key) == train[:int(np.sum(sizes <= budget))]
    # shuffled and split into other files: the same sample, the same tokenizer
    shuffled = texts[:]
    random.Random(1).shuffle(shuffled)
    write_jsonl(tmp_path / "b" / "x.jsonl", shuffled[:250])
    write_jsonl(tmp_path / "b" / "y.jsonl", shuffled[250:])
    other = prepare.ensure_tokenizer(tmp_path / "r2", "bpe",
                                     tokenizer_corpora=(f"jsonl:{tmp_path}/b/*.jsonl",), **kwargs)
    assert sorted(fed[1]) == sorted(fed[0]) and other.name == tok.name


def test_the_sample_is_streamed_in_shards(tmp_path, monkeypatch, fed):
    texts = generated(300)
    write_jsonl(tmp_path / "big.jsonl", texts)
    monkeypatch.setattr(bpe_training.sources, "SHARD_BYTES", 64 << 10)
    read = []
    real = prepare.sources.documents
    monkeypatch.setattr(bpe_training.sources, "documents",
                        lambda source, shard: read.append(shard) or real(source, shard))
    prepare.ensure_tokenizer(tmp_path, "bpe", vocab_size=300, tokenizer_sample_mb=0.25,
                             tokenizer_corpora=(f"jsonl:{tmp_path}/big.jsonl",))
    size = (tmp_path / "big.jsonl").stat().st_size
    assert len(read) == -(-size // (64 << 10)) > 10  # every shard once, none held whole
    assert sum(len(t.encode()) for t in fed[0]) <= 0.25 * MIB


@pytest.mark.parametrize("val_fraction", [0.2, 1e-6])
def test_no_validation_document_is_in_the_sample(tmp_path, val_fraction, fed):
    """Also when the hash rule puts no document in validation and the split moves one there."""
    texts = generated(40, seed=3)
    write_jsonl(tmp_path / "docs.jsonl", texts)
    prepare.ensure_tokenizer(tmp_path, "bpe", vocab_size=300, val_fraction=val_fraction,
                             tokenizer_corpora=(f"jsonl:{tmp_path}/docs.jsonl",))
    mask = split.validation_mask(texts, val_fraction)
    assert any(mask)
    assert sorted(fed[0]) == sorted(t for t, v in zip(texts, mask) if not v)


# --- the recipe: unchanged input finds the tokenizer, changed input trains a new one ------------


def test_the_recipe_finds_the_tokenizer_again_and_changed_input_retrains(tmp_path, monkeypatch):
    texts = sample_texts("en_lit_sample")
    write_jsonl(tmp_path / "src" / "a.jsonl", texts[:10])
    write_jsonl(tmp_path / "src" / "b.jsonl", texts[10:])
    kwargs = dict(vocab_size=400, tokenizer_corpora=(f"jsonl:{tmp_path}/src/*.jsonl",
                                                     "code_py_sample"))
    first = prepare.ensure_tokenizer(tmp_path, "bpe", **kwargs)
    real = bpe_training.train_bpe
    monkeypatch.setattr(bpe_training, "train_bpe", lambda *a: pytest.fail("trained again"))
    assert prepare.ensure_tokenizer(tmp_path, "bpe", **kwargs).name == first.name
    assert bpe_training.find_bpe_tokenizer(tmp_path, **kwargs) == first.name
    for changed in (dict(val_fraction=0.1), dict(tokenizer_sample_mb=50.0)):
        assert bpe_training.find_bpe_tokenizer(tmp_path, **kwargs, **changed) is None
    monkeypatch.setattr(bpe_training, "train_bpe", real)
    write_jsonl(tmp_path / "src" / "b.jsonl", sample_texts("en_docs_sample"))  # new input
    assert bpe_training.find_bpe_tokenizer(tmp_path, **kwargs) is None
    second = prepare.ensure_tokenizer(tmp_path, "bpe", **kwargs)
    assert second.name != first.name and second.name.startswith("bpe400-")
    assert bpe_training.find_bpe_tokenizer(tmp_path, **kwargs) == second.name


def test_a_pinned_corpus_is_found_without_fetching(tmp_path, monkeypatch):
    pinned = next(c for c in corpora.CORPORA.values() if c.sha256)
    monkeypatch.setattr(bpe_training.fetch, "ensure_fetched", lambda *a: pytest.fail("fetched"))
    monkeypatch.setattr(bpe_training.fetch, "local_manifest", lambda *a: pytest.fail("read"))
    plan = bpe_training.bpe_plan(tmp_path, (pinned.name,))
    assert plan.inputs[0].fingerprint == pinned.sha256
    assert bpe_training.find_bpe(tmp_path, plan) is None


def test_the_lookup_fetches_nothing(tmp_path, monkeypatch):
    """A registered corpus that is neither pinned nor fetched: no tokenizer can be found."""
    unpinned = [c for c in corpora.CORPORA.values() if not c.sha256 and not c.is_sample]
    if not unpinned:
        pytest.skip("every fetched corpus is pinned")
    monkeypatch.setattr(bpe_training.fetch, "ensure_fetched", lambda *a: pytest.fail("fetched"))
    assert bpe_training.find_bpe_tokenizer(tmp_path, tokenizer_corpora=(unpinned[0].name,)) is None


# --- python -m data.tokenizer train --------------------------------------------------------------


def test_the_command_writes_a_tokenizer_that_runs_use_as_hf_dir(tmp_path, capsys):
    write_jsonl(tmp_path / "mine.jsonl", sample_texts("en_lit_sample"))
    out = tmp_path / "tok"
    argv = ["train", "--corpus", f"jsonl:{tmp_path}/mine.jsonl,code_py_sample",
            "--vocab_size", "500", "--out_dir", str(out), "--data_root", str(tmp_path / "root")]
    assert tokenizer.main(argv) == 0
    printed = capsys.readouterr().out
    assert json.loads((out / "tokenizer_config.json").read_text()) == {
        "eos_token": tokenizer.EOS_TEXT}
    text = (out / "tokenizer.json").read_text()
    bpe = f"bpe500-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    assert bpe in printed and f"hf:{out}" in printed
    assert (tmp_path / "root" / "tokenizers" / bpe / "tokenizer.json").read_text() == text
    assert tokenizer.main(argv) == 0 and "found" in capsys.readouterr().out  # the same again
    # the same tokenizer with one tokenizer thread (TOKENIZERS_PARALLELISM=false), --out spelling
    one_thread = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "data.tokenizer", *argv[:5], "--out",
                           str(tmp_path / "tok1"), "--data_root", str(tmp_path / "root1")],
                          cwd=REPO, env=one_thread, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tok1" / "tokenizer.json").read_text() == text
    prepared = prepare.ensure_prepared(tmp_path / "root", "en_docs_sample", tokenizer=f"hf:{out}",
                                       workers=1)
    assert prepared.tokenizer == "hf-" + bpe.split("-")[1] and prepared.vocab_size == 500
    tok = tokenizer.load_tokenizer(tmp_path / "root", prepared.tokenizer)
    assert tok.eos_id == 0
    docs = tok.decode(np.asarray(prepared.val.tokens).tolist()).split(tokenizer.EOS_TEXT)[:-1]
    texts = sample_texts("en_docs_sample")
    assert docs == [t for t, v in zip(texts, split.validation_mask(texts, 0.02)) if v]
    assert prepared.val.num_bytes == sum(len(d.encode()) + 1 for d in docs)  # bpb stays exact


def bad(tmp_path, capsys, *args, corpus="code_py_sample", out="tok", vocab_size="300") -> str:
    """The one error line of the command with these flags (nothing may be trained)."""
    argv = ["train", "--corpus", corpus, "--vocab_size", vocab_size, "--out_dir",
            str(tmp_path / out), "--data_root", str(tmp_path / "root"), *args]
    assert tokenizer.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_the_command_refuses_bad_input_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bpe_training, "train_bpe", lambda *a: pytest.fail("trained"))
    (tmp_path / "empty.jsonl").write_text("")
    assert "unknown corpus or source 'nope'" in bad(tmp_path, capsys, corpus="nope")
    assert "matches no file" in bad(tmp_path, capsys, corpus=f"jsonl:{tmp_path}/none*.jsonl")
    assert "is empty" in bad(tmp_path, capsys, corpus=f"jsonl:{tmp_path}/empty.jsonl")
    assert "at least 258" in bad(tmp_path, capsys, vocab_size="257")
    for size in ("0", "-1", "nan"):
        assert "must be a number of MiB > 0" in bad(tmp_path, capsys, "--sample_mb", size)
    assert "--vocab_size" in bad(tmp_path, capsys, vocab_size="many")
    (tmp_path / "file").write_text("x")
    assert "is a file, not a directory" in bad(tmp_path, capsys, out="file")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    assert "does not name <|endoftext|>" in bad(tmp_path, capsys, out="cfg")
    assert not (tmp_path / "root" / "tokenizers").exists()


def test_the_command_never_overwrites_another_tokenizer(tmp_path, capsys):
    (tmp_path / "tok").mkdir()
    theirs = tmp_path / "tok" / "tokenizer.json"
    theirs.write_text("{}")
    err = bad(tmp_path, capsys)
    assert "holds a tokenizer.json already" in err and f"delete {theirs}" in err
    assert theirs.read_text() == "{}"
    # a tokenizer trained into mine/, then asked for with another val_fraction
    argv = ["train", "--corpus", "code_py_sample", "--vocab_size", "300", "--out_dir",
            str(tmp_path / "mine"), "--data_root", str(tmp_path / "root")]
    assert tokenizer.main(argv) == 0
    assert "holds a tokenizer.json already" in bad(tmp_path, capsys, "--val_fraction", "0.3",
                                                   out="mine")


def test_settings_that_no_bpe_can_have_are_refused_by_runs(tmp_path):
    with pytest.raises(ValueError, match="at least 258"):
        prepare.ensure_tokenizer(tmp_path, "bpe", vocab_size=100)
    with pytest.raises(ValueError, match="must be a number of MiB > 0"):
        prepare.ensure_tokenizer(tmp_path, "bpe", tokenizer_sample_mb=0)
    with pytest.raises(ValueError, match="name the sources"):
        prepare.ensure_tokenizer(tmp_path, "bpe", tokenizer_corpora=())
    with pytest.raises(ValueError, match="unknown corpus or source 'jsonl'"):
        prepare.ensure_tokenizer(tmp_path, "bpe", tokenizer_corpora=("jsonl",))
