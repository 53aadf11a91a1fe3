"""Tokenizes a corpus into train/validation token arrays.

    python -m data.prepare --corpus NAME --tokenizer byte|bpe [--vocab_size 8192]
        [--tokenizer_corpora en_docs,code_py] [--root DIR] [--val_fraction 0.02]

From code, `ensure_prepared(root, corpus, ...)` fetches the corpus, trains the BPE tokenizer and
prepares the arrays on first use, then opens them (`data.dataset.PreparedCorpus`).

Documents are split by content hash (`data.split`). Each split is its documents' tokens, each
followed by EOS, stored as a 1-D zarr array (uint16 when the vocabulary fits, else uint32) in
`ROOT/prepared/<tokenizer_id>/<corpus>/`, next to meta.json (counts of documents, tokens and
bytes per split, corpus sha256, tokenizer, vocabulary, EOS id, dtype). The directory is built
aside and renamed into place with meta.json inside (`data.atomic`), so a run never reads a partial
preparation. Preparing twice gives byte-identical arrays.

A BPE tokenizer is trained on the train splits of `tokenizer_corpora` (split with the same
`val_fraction`, so it never sees their validation documents) and saved under
`ROOT/tokenizers/<id>/`, with `recipes/<key>.json` recording what it was trained on so that a
later call finds it without the corpora.
"""
import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import tqdm

from configs.base import data_defaults
from data import atomic, corpora, dataset, documents, fetch, split, store
from data.tokenizer import (
    ByteTokenizer,
    Tokenizer,
    bpe_id,
    load_tokenizer,
    tokenizer_dir,
    train_bpe,
)

DEFAULTS = data_defaults()  # vocabulary size, validation fraction, tokenizer corpora
DOCS_PER_BATCH = 256


def _split_texts(root, corpus: str, val_fraction: float) -> tuple[list[str], list[bool]]:
    """The documents of `corpus` (fetched on first use) and their validation flags."""
    docs_path, manifest = fetch.ensure_fetched(root, corpus)
    if manifest["num_docs"] < 2:
        fix = ("restore it from git or rebuild it with `python -m data.samples`"
               if corpora.get(corpus).is_sample else
               f"delete {docs_path.parent} and fetch it again with "
               f"`python -m data.fetch {corpus} --root {root}`")
        raise ValueError(f"empty corpus {corpus!r}: {docs_path} has {manifest['num_docs']} "
                         f"document(s), but a train/validation split needs at least 2; {fix}")
    texts = list(documents.read_texts(docs_path))
    return texts, split.validation_mask(texts, val_fraction)


def _bpe_batches(root, tokenizer_corpora, val_fraction: float) -> Iterator[list[str]]:
    for corpus in tokenizer_corpora:
        texts, is_val = _split_texts(root, corpus, val_fraction)
        train = [t for t, v in zip(texts, is_val) if not v]
        with tqdm.tqdm(total=len(train), unit="doc", desc=f"train BPE on {corpus}") as bar:
            for i in range(0, len(train), DOCS_PER_BATCH):
                yield train[i:i + DOCS_PER_BATCH]
                bar.update(len(train[i:i + DOCS_PER_BATCH]))


def ensure_tokenizer(root, kind: str, *, vocab_size: int = DEFAULTS.vocab_size,
                     tokenizer_corpora=tuple(DEFAULTS.tokenizer_corpora),
                     val_fraction: float = DEFAULTS.val_fraction) -> Tokenizer:
    """The `byte` tokenizer, or the `bpe` one for these settings, trained on first use."""
    if kind == "byte":
        return ByteTokenizer()
    if kind != "bpe":
        raise ValueError(f"unknown tokenizer {kind!r}; use 'byte' or 'bpe'")
    for corpus in tokenizer_corpora:
        corpora.get(corpus)
    recipe = dict(vocab_size=vocab_size, corpora=list(tokenizer_corpora), val_fraction=val_fraction)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    found = sorted(Path(root, "tokenizers").glob(f"bpe{vocab_size}-*/recipes/{key}.json"))
    if found:
        return load_tokenizer(root, found[0].parent.parent.name)
    tokenizer_json = train_bpe(_bpe_batches(root, tokenizer_corpora, val_fraction), vocab_size)
    tokenizer_id = bpe_id(vocab_size, tokenizer_json)
    path = tokenizer_dir(root, tokenizer_id)
    atomic.build_once(path, lambda tmp: (tmp / "tokenizer.json").write_text(tokenizer_json),
                      "tokenizer.json")
    manifests = {c: fetch.local_manifest(root, c)["sha256"] for c in tokenizer_corpora}
    record = dict(recipe, corpus_sha256=manifests)
    atomic.write_file(path / "recipes" / f"{key}.json", json.dumps(record, indent=1).encode())
    return load_tokenizer(root, tokenizer_id)


def _prepare_into(out: Path, root, corpus: str, tok: Tokenizer, val_fraction: float) -> None:
    texts, is_val = _split_texts(root, corpus, val_fraction)
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32)
    parts = {name: [] for name in dataset.SPLITS}
    counts = {name: dict(num_docs=0, num_tokens=0, num_bytes=0) for name in dataset.SPLITS}
    num_bytes = [len(t.encode()) for t in texts]
    with tqdm.tqdm(total=sum(num_bytes), unit="B", unit_scale=True,
                   desc=f"prepare {corpus} ({tok.name})") as bar:
        for i in range(0, len(texts), DOCS_PER_BATCH):
            batch = slice(i, i + DOCS_PER_BATCH)
            for ids, val, size in zip(tok.encode_batch(texts[batch]), is_val[batch],
                                      num_bytes[batch]):
                name = "val" if val else "train"
                parts[name].append(np.asarray(ids + [tok.eos_id], dtype))
                counts[name]["num_docs"] += 1
                counts[name]["num_tokens"] += len(ids) + 1
                counts[name]["num_bytes"] += size + 1  # the EOS counts as one byte
                bar.update(size)
    for name in dataset.SPLITS:
        store.write_tokens(str(out / f"{name}.zarr"), np.concatenate(parts[name]))
    meta = dict(corpus=corpus, corpus_sha256=fetch.local_manifest(root, corpus)["sha256"],
                tokenizer=tok.name, vocab_size=tok.vocab_size, eos_id=tok.eos_id,
                dtype=dtype.name, val_fraction=val_fraction, splits=counts,
                num_bytes_note="UTF-8 bytes of the documents plus 1 per document for its EOS")
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _check_current(prepared: dataset.PreparedCorpus, root, val_fraction: float) -> None:
    """Refuses prepared data made with another val_fraction or from another corpus version."""
    meta, path = prepared.meta, prepared.path
    if meta["val_fraction"] != val_fraction:
        raise ValueError(f"{path} was prepared with val_fraction={meta['val_fraction']}, not "
                         f"{val_fraction}: use that value, or delete {path} to prepare again")
    manifest = fetch.local_manifest(root, prepared.corpus)
    if manifest is not None and manifest["sha256"] != meta["corpus_sha256"]:
        raise ValueError(f"{path} was prepared from another version of corpus "
                         f"{prepared.corpus!r} (sha256 {meta['corpus_sha256'][:12]}, now "
                         f"{manifest['sha256'][:12]}): delete {path} to prepare again")


def ensure_prepared(root, corpus: str, *, tokenizer: str = DEFAULTS.tokenizer,
                    vocab_size: int = DEFAULTS.vocab_size,
                    tokenizer_corpora=tuple(DEFAULTS.tokenizer_corpora),
                    val_fraction: float = DEFAULTS.val_fraction) -> dataset.PreparedCorpus:
    """The prepared splits of `corpus`, fetching, training and preparing whatever is missing.

    `root` must be local; prepared data copied to gs:// is read with `dataset.open_prepared`.
    """
    corpora.get(corpus)  # an unknown name fails before any work
    if str(root).startswith("gs://"):
        raise ValueError(f"ensure_prepared writes local files; prepare under a local root, copy "
                         f"ROOT/prepared/<tokenizer_id>/{corpus} to {root} and read it with "
                         f"data.dataset.open_prepared")
    tok = ensure_tokenizer(root, tokenizer, vocab_size=vocab_size,
                           tokenizer_corpora=tokenizer_corpora, val_fraction=val_fraction)
    path = Path(dataset.prepared_path(root, tok.name, corpus))
    atomic.build_once(path, lambda out: _prepare_into(out, root, corpus, tok, val_fraction),
                      "meta.json")
    prepared = dataset.open_prepared(root, corpus, tok.name)
    _check_current(prepared, root, val_fraction)
    return prepared


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True, help="`python -m data.fetch` lists them")
    parser.add_argument("--tokenizer", default=DEFAULTS.tokenizer, choices=("byte", "bpe"))
    parser.add_argument("--vocab_size", type=int, default=DEFAULTS.vocab_size, help="bpe only")
    parser.add_argument("--tokenizer_corpora", default=",".join(DEFAULTS.tokenizer_corpora),
                        help="bpe only: comma-separated corpora the tokenizer is trained on")
    parser.add_argument("--root", help="data root (default: $OPTISCALE_DATA_DIR, else "
                        "~/.cache/optiscale)")
    parser.add_argument("--val_fraction", type=float, default=DEFAULTS.val_fraction)
    args = parser.parse_args(argv)
    start = time.time()
    prepared = ensure_prepared(args.root or dataset.default_root(), args.corpus,
                               tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                               tokenizer_corpora=tuple(args.tokenizer_corpora.split(",")),
                               val_fraction=args.val_fraction)
    print(f"{prepared.path} ({time.time() - start:.1f} s): tokenizer {prepared.tokenizer}, "
          f"vocab_size {prepared.vocab_size}")
    for s in (prepared.train, prepared.val):
        print(f"  {s.name:5} {s.num_docs:6d} docs {s.num_tokens:11d} tokens {s.num_bytes:11d} "
              f"bytes  {s.bytes_per_token:.3f} bytes/token")


if __name__ == "__main__":
    main()
