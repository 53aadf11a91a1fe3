"""Tokenizes a source into train/validation token arrays: streaming, in parallel, resumable.

    python -m data.prepare --corpus SOURCE [--tokenizer byte|bpe|hf:PATH] [--vocab_size 8192]
        [--tokenizer_corpora en_docs,code_py] [--tokenizer_sample_mb 100] [--data_root DIR]
        [--val_fraction 0.02] [--text_field text] [--workers N] [--shard_mb 64]

(--data_root was --root, which still works.)

SOURCE is a registered corpus or anything else `data.sources` reads (jsonl:, parquet:, text:,
hf:). From code, `ensure_prepared(root, source, ...)` fetches a registered corpus, trains or
imports the tokenizer and prepares the arrays on first use, then opens them
(`data.dataset.PreparedCorpus`).

Output, in `ROOT/prepared/<tokenizer_id>/<name>/` (`<name>-<fingerprint>` for a source that is
not registered, so that changed input files are prepared afresh, never mixed with old ones):
train.zarr and val.zarr, each its split's documents' tokens, each document followed by EOS
(uint16 when the vocabulary fits, else uint32; layout in `data.store`), and meta.json (counts
of documents, tokens and bytes per split, the source's fingerprint, tokenizer, vocabulary, EOS
id, dtype). ROOT may be local, gs://bucket/dir or memory://dir (tests).

How: the source is cut into shards (`data.sources.plan`; `work/plan.json` records the plan).
Worker processes each tokenize one shard at a time, splitting it by document content hash
(`data.split`), and write its tokens in parts under `work/NNNNN/`, then `done.json` last. The
shards' parts are then copied in order into the two arrays, one array shard at a time, and
meta.json is written: it marks a complete preparation, and only then does a run read it. So
memory does not grow with the corpus; the arrays depend on the documents only (not on the
number of workers or the shard size); and a killed preparation, started again, redoes only the
shards without done.json. On a local ROOT a lock file serialises processes preparing the same
directory (a sweep's runs start together); on a bucket, prepare once before launching many.

A BPE tokenizer is trained on a bounded sample of the training documents of
`tokenizer_corpora` (any sources; `data.bpe_training`) and saved under `ROOT/tokenizers/<id>/`,
found again by its recipe: changed input trains a new one.
"""
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from core import cli
from core.processes import die_with_parent
from data import (
    atomic,
    bpe_training,
    corpora,
    dataset,
    fetch,
    sources,
    split,
    store,
    verify,
)
from data.settings import DATA
from data.tokenizer import (
    DOCS_PER_BATCH,
    ByteTokenizer,
    Tokenizer,
    import_hf_tokenizer,
    load_tokenizer,
)

DEFAULTS = DATA.config_dict()  # vocabulary size, validation fraction, tokenizer corpora
PART_TOKENS = 1 << 22  # tokens a worker holds before it writes them out


# ---------------------------------------------------------------------------------------------
# Tokenizers

def ensure_tokenizer(root, kind: str, *, vocab_size: int = DEFAULTS.vocab_size,
                     tokenizer_corpora=tuple(DEFAULTS.tokenizer_corpora),
                     val_fraction: float = DEFAULTS.val_fraction,
                     tokenizer_sample_mb: float = DEFAULTS.tokenizer_sample_mb,
                     named_sources=None, text_field: str = DEFAULTS.text_field) -> Tokenizer:
    """The `byte` tokenizer, the `bpe` one for these settings (trained on first use), or the
    Hugging Face tokenizer `hf:PATH` (imported under `root` on first use).

    The BPE is trained on a sample of the training documents of `tokenizer_corpora` (any
    sources, `named_sources` naming some; `data.bpe_training`) and found again by its recipe,
    so changed input or settings train a new one and unchanged ones load the stored one."""
    if kind == "byte":
        return ByteTokenizer()
    if kind.startswith("hf:"):
        return import_hf_tokenizer(root, kind[len("hf:"):])
    if kind != "bpe":
        raise ValueError(f"unknown tokenizer {kind!r}; use byte, bpe or hf:PATH (a "
                         "tokenizer.json, or a directory holding one)")
    plan = bpe_training.bpe_plan(dataset.local_root(root), tokenizer_corpora,
                                 vocab_size=vocab_size, val_fraction=val_fraction,
                                 sample_mb=tokenizer_sample_mb, named_sources=named_sources,
                                 text_field=text_field)
    return load_tokenizer(root, bpe_training.find_bpe(root, plan)
                          or bpe_training.train_bpe_tokenizer(root, plan))


# ---------------------------------------------------------------------------------------------
# One shard (runs in a worker process)


@dataclasses.dataclass(frozen=True)
class _Job:
    index: int
    source: sources.Source
    shard: sources.Shard
    work: str  # this shard's directory
    root: str  # where the tokenizer is stored
    tokenizer: str  # its id
    dtype: str
    val_threshold: int


class _SplitParts:
    """One split's tokens of one shard, written out in parts of about PART_TOKENS."""

    def __init__(self, directory: str, name: str):
        self.directory, self.name = directory, name
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.parts: list[int] = []  # tokens per part
        self.num_docs = self.num_tokens = self.num_bytes = 0

    def add(self, pieces: list[np.ndarray], num_bytes: int) -> None:
        """Adds one document, given as consecutive pieces of tokens."""
        size = sum(len(p) for p in pieces)
        self.pending += pieces
        self.pending_size += size
        self.num_docs += 1
        self.num_tokens += size
        self.num_bytes += num_bytes
        if self.pending_size >= PART_TOKENS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            tokens = np.concatenate(self.pending)
            store.write_bytes(_part_path(self.directory, self.name, len(self.parts)),
                              tokens.tobytes())
            self.parts.append(len(tokens))
            self.pending, self.pending_size = [], 0

    def record(self) -> dict:
        return dict(num_docs=self.num_docs, num_tokens=self.num_tokens, num_bytes=self.num_bytes,
                    parts=self.parts)


def _part_path(directory: str, name: str, index: int) -> str:
    return store.join(directory, f"{name}-{index:05d}.bin")


@functools.lru_cache(maxsize=2)
def _worker_tokenizer(root: str, tokenizer_id: str) -> Tokenizer:
    return load_tokenizer(root, tokenizer_id)


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepare_shard(job: _Job) -> dict:
    """Tokenizes one shard into `job.work`; returns (and writes, last, as done.json) its record:
    per split the counts and part sizes, plus the two documents nearest the split threshold on
    either side, which the concatenation may move (`data.split`)."""
    tok = _worker_tokenizer(job.root, job.tokenizer)
    dtype = np.dtype(job.dtype).newbyteorder("<")
    eos = np.asarray([tok.eos_id], dtype)
    parts = {name: _SplitParts(job.work, name) for name in dataset.SPLITS}
    nearest = {}  # "train": its document with the smallest order key; "val": the largest
    for texts in _batches(sources.documents(job.source, job.shard), DOCS_PER_BATCH):
        for text, ids in zip(texts, tok.encode_arrays(texts, dtype)):
            key = split.document_key(text)
            name = "val" if split.is_validation(key, job.val_threshold) else "train"
            order = [key % split.RESOLUTION, f"{key:064x}"]
            doc = dict(order=order, start=parts[name].num_tokens, num_tokens=len(ids) + 1,
                       num_bytes=len(text.encode()) + 1)  # the EOS counts as one byte
            best = nearest.get(name)
            if best is None or (order < best["order"] if name == "train" else
                                order > best["order"]):
                nearest[name] = doc
            parts[name].add([ids, eos], doc["num_bytes"])
    for p in parts.values():
        p.flush()
    record = dict(index=job.index, splits={n: p.record() for n, p in parts.items()},
                  nearest=nearest)
    store.write_json(store.join(job.work, "done.json"), record)
    return record


def _init_worker(parent: int) -> None:
    """Sets up a worker of the pool: one tokenizer thread, and an end when `parent` (the pid of
    python -m data.prepare) dies, so that killing it leaves no worker tokenizing on."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    die_with_parent(parent)


def _run_jobs(jobs: list[_Job], workers: int, desc: str) -> Iterator[dict]:
    """Each job's record as it finishes (in-process for one worker), with a progress bar."""
    bar = cli.progress(total=len(jobs), unit="shard", desc=desc)
    start, docs, num_bytes = time.time(), 0, 0

    def finished(record: dict) -> dict:
        nonlocal docs, num_bytes
        docs += sum(s["num_docs"] for s in record["splits"].values())
        num_bytes += sum(s["num_bytes"] for s in record["splits"].values())
        elapsed = max(time.time() - start, 1e-9)
        bar.set_postfix_str(f"{num_bytes / elapsed / 1e6:.1f} MB/s, {docs / elapsed:.0f} doc/s")
        bar.update(1)
        return record

    try:
        if workers == 1:
            for job in jobs:
                yield finished(_prepare_shard(job))
            return
        context = multiprocessing.get_context("spawn")  # never fork a process that runs JAX
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                    initializer=_init_worker,
                                                    initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_prepare_shard, job) for job in jobs]
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield finished(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# The whole source


def _shard_tokens(work: str, record: dict, name: str, dtype) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, tokens) of each part of one shard's `name` split, in order."""
    directory = store.join(work, f"{record['index']:05d}")
    offset = 0
    for i, size in enumerate(record["splits"][name]["parts"]):
        data = store.read_bytes(_part_path(directory, name, i))
        if data is None or len(data) != size * dtype.itemsize:
            store.delete_tree(directory)  # the rerun prepares this shard again
            raise RuntimeError(f"prepared shard {directory} is damaged (part {i} of {name} is "
                               "missing or short); run the preparation again: it redoes that "
                               "shard")
        yield offset, np.frombuffer(data, dtype)
        offset += size


def _moved_document(records: list[dict], source: sources.Source) -> Optional[tuple[str, dict]]:
    """(split it leaves, document) when the hash rule leaves a split empty (`data.split`)."""
    docs = {n: sum(r["splits"][n]["num_docs"] for r in records) for n in dataset.SPLITS}
    if docs["train"] + docs["val"] < 2:
        raise sources.SourceError(f"{source.spec} has {docs['train'] + docs['val']} document(s), "
                                  "but a train/validation split needs at least 2; add documents")
    if docs["val"] and docs["train"]:
        return None
    leaves = "val" if not docs["train"] else "train"
    pick = min if leaves == "train" else max
    record = pick((r for r in records if leaves in r["nearest"]),
                  key=lambda r: r["nearest"][leaves]["order"])
    return leaves, dict(record["nearest"][leaves], index=record["index"])


def _concatenate(path: str, work: str, records: list[dict], dtype, moved) -> dict:
    """Writes train.zarr and val.zarr from the shards' parts; returns the split counts."""
    counts = {n: {k: sum(r["splits"][n][k] for r in records)
                  for k in ("num_docs", "num_tokens", "num_bytes")} for n in dataset.SPLITS}
    if moved:
        leaves, doc = moved
        enters = "train" if leaves == "val" else "val"
        for key, sign in ((leaves, -1), (enters, 1)):
            counts[key]["num_docs"] += sign
            counts[key]["num_tokens"] += sign * doc["num_tokens"]
            counts[key]["num_bytes"] += sign * doc["num_bytes"]
    for name in dataset.SPLITS:
        writer = store.TokenWriter(store.join(path, f"{name}.zarr"),
                                   counts[name]["num_tokens"], dtype)
        for record in records:
            streams = [name]
            if moved and moved[1]["index"] == record["index"] and name != moved[0]:
                streams.append(moved[0])  # the moved document joins this (otherwise empty) split
            for stream in streams:
                for offset, tokens in _shard_tokens(work, record, stream, dtype):
                    writer.append(_select(tokens, offset, moved, record, stream, name))
        writer.close()
        counts[name]["block_sha256"] = writer.block_hashes
        counts[name]["shard_sha256"] = writer.shard_hashes
    return counts


def _select(tokens, offset: int, moved, record: dict, stream: str, name: str) -> np.ndarray:
    """The tokens of one part of this shard's `stream` that go to split `name`: all of them,
    unless the moved document lies in it (then all but it, or only it)."""
    if moved is None or moved[1]["index"] != record["index"] or stream != moved[0]:
        return tokens
    lo = min(max(moved[1]["start"] - offset, 0), len(tokens))
    hi = min(max(moved[1]["start"] + moved[1]["num_tokens"] - offset, 0), len(tokens))
    if stream == name:  # the split it leaves: all but the document
        return np.concatenate([tokens[:lo], tokens[hi:]])
    return tokens[lo:hi]


def _plan_record(source: sources.Source, fingerprint: dict, shards, tok: Tokenizer,
                 val_fraction: float) -> dict:
    return dict(source=source.spec, fingerprint=fingerprint["sha256"], tokenizer=tok.name,
                val_fraction=val_fraction, shards=[dataclasses.asdict(s) for s in shards])


def _prepare(path: str, source: sources.Source, fingerprint: dict, fetch_root, root,
             tok: Tokenizer, val_fraction: float, workers: int, shard_bytes: int) -> None:
    shards = sources.plan(source, fetch_root, shard_bytes)
    work = store.join(path, "work")
    plan = _plan_record(source, fingerprint, shards, tok, val_fraction)
    if store.read_json(store.join(work, "plan.json")) != plan:
        store.delete_tree(work)  # another plan's shards (or none) are there
        store.write_json(store.join(work, "plan.json"), plan)
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32).newbyteorder("<")
    records = {}
    for i in range(len(shards)):
        record = store.read_json(store.join(work, f"{i:05d}", "done.json"))
        if record is not None:
            records[i] = record
    if records:
        print(f"{path}: {len(records)} of {len(shards)} shards were prepared before; "
              "preparing the rest", flush=True)
    jobs = [_Job(i, source, shard, store.join(work, f"{i:05d}"), str(root), tok.name,
                 dtype.str, split.threshold(val_fraction))
            for i, shard in enumerate(shards) if i not in records]
    if any("memory://" in str(p) for p in (path, source.target)):
        workers = 1  # a memory:// store exists in this process only
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    for record in _run_jobs(jobs, workers, f"prepare {source.name} ({tok.name})"):
        records[record["index"]] = record
    if sources.fingerprint(source, fetch_root)["sha256"] != fingerprint["sha256"]:
        store.delete_tree(work)
        raise sources.SourceError(f"{source.spec} changed while it was being prepared; prepare "
                                  "it again once its files stay put")
    ordered = [records[i] for i in range(len(shards))]
    counts = _concatenate(path, work, ordered, dtype, _moved_document(ordered, source))
    meta = dict(corpus=source.name, source=source.spec, fingerprint=fingerprint["sha256"],
                tokenizer=tok.name, vocab_size=tok.vocab_size, eos_id=tok.eos_id,
                dtype=dtype.name, val_fraction=val_fraction, splits=counts,
                array_driver=store.ZARR3, num_shards=len(shards),
                num_bytes_note="UTF-8 bytes of the documents plus 1 per document for its EOS")
    if source.registered:
        meta["corpus_sha256"] = fingerprint["corpus_sha256"]
    problems = verify.damaged_blocks(path, meta)  # read back: what was written is what was meant
    if problems:
        raise RuntimeError(f"the arrays written to {path} do not read back as written: "
                           f"{'; '.join(problems[:3])}; check the disk and prepare again")
    store.write_json(store.join(path, "meta.json"), meta)
    store.delete_tree(work)


def _check_current(prepared: dataset.PreparedCorpus, fetch_root, val_fraction: float) -> None:
    """Refuses prepared data made with another val_fraction or from another corpus version."""
    meta, path = prepared.meta, prepared.path
    if meta["val_fraction"] != val_fraction:
        raise ValueError(f"{path} was prepared with val_fraction={meta['val_fraction']}, not "
                         f"{val_fraction}: use that value, or delete {path} to prepare again")
    if "corpus_sha256" not in meta:
        return  # a source that is not registered: its fingerprint is in the directory name
    # A pinned corpus has one version, wherever the data root is; another's is its local fetch.
    current = corpora.get(prepared.corpus).sha256 or (
        fetch.local_manifest(fetch_root, prepared.corpus) or {}).get("sha256")
    if current is not None and current != meta["corpus_sha256"]:
        raise ValueError(f"{path} was prepared from another version of corpus "
                         f"{prepared.corpus!r} (sha256 {meta['corpus_sha256'][:12]}, now "
                         f"{current[:12]}): delete {path} to prepare again")


def _set_aside_outdated(path: str, source: sources.Source) -> None:
    """Renames arrays prepared on a local root from another version of a pinned corpus (e.g. the
    Debian-built en_docs of earlier versions) to PATH.<that version's sha256[:12]>, so that the
    pinned corpus is prepared in their place and nothing is lost or read as the new corpus. On
    a bucket they stay, and `_check_current` refuses them."""
    pinned = corpora.get(source.target).sha256 if source.registered else ""
    meta_path = store.join(path, "meta.json")
    if not pinned or not store.is_local(path):
        return

    def version():
        meta = store.read_json(meta_path)
        return None if meta is None else meta.get("corpus_sha256", pinned)

    if version() in (None, pinned):  # the usual cases: no lock needed
        return
    try:
        moved = atomic.set_aside(Path(path), version, pinned)
    except FileExistsError as err:
        raise ValueError(f"{path} was prepared from another version of corpus {source.name!r}, "
                         f"and {err.args[0]} exists already: move or delete one of them to "
                         "prepare the corpus again") from err
    if moved:
        old, aside = moved
        print(f"{path} was prepared from another version of corpus {source.name!r} (sha256 "
              f"{old[:12]}, not the pinned {pinned[:12]}): moved it to {aside}; preparing the "
              "pinned version", file=sys.stderr, flush=True)


def prepared_name(source: sources.Source, fingerprint: Optional[dict]) -> str:
    """The source's directory under ROOT/prepared/<tokenizer_id>/ (`fingerprint`, that of a
    source that is not registered, names its input)."""
    return source.name if source.registered else f"{source.name}-{fingerprint['sha256'][:12]}"


def ensure_prepared(root, corpus: str, *, tokenizer: str = DEFAULTS.tokenizer,
                    vocab_size: int = DEFAULTS.vocab_size,
                    tokenizer_corpora=tuple(DEFAULTS.tokenizer_corpora),
                    tokenizer_sample_mb: float = DEFAULTS.tokenizer_sample_mb,
                    val_fraction: float = DEFAULTS.val_fraction, named_sources=None,
                    text_field: str = DEFAULTS.text_field, workers: int = DEFAULTS.workers,
                    shard_bytes: int = sources.SHARD_BYTES,
                    read: bool = True) -> dataset.PreparedCorpus:
    """The prepared splits of source `corpus` (a registered corpus, a name in `named_sources`
    or a source spec), fetching, tokenizer-training and preparing whatever is missing; `read`
    as in `dataset.open_prepared`."""
    source = sources.resolve(corpus, named_sources, text_field)
    split.threshold(val_fraction)  # a bad value fails before any work
    fetch_root = dataset.local_root(root)
    tok = ensure_tokenizer(root, tokenizer, vocab_size=vocab_size,
                           tokenizer_corpora=tokenizer_corpora, val_fraction=val_fraction,
                           tokenizer_sample_mb=tokenizer_sample_mb, named_sources=named_sources,
                           text_field=text_field)
    # A registered corpus's directory has a fixed name: its fingerprint is needed only to prepare.
    fingerprint = None if source.registered else sources.fingerprint(source, fetch_root)
    name = prepared_name(source, fingerprint)
    path = dataset.prepared_path(root, tok.name, name)
    _set_aside_outdated(path, source)
    if dataset.read_meta(root, name, tok.name, source.spec) is None:
        def build():
            if dataset.read_meta(root, name, tok.name, source.spec) is None:  # not built meanwhile
                _prepare(path, source, fingerprint or sources.fingerprint(source, fetch_root),
                         fetch_root, root, tok, val_fraction, workers, shard_bytes)
        if store.is_local(path):
            with atomic.locked(Path(path).parent / f".{Path(path).name}.lock"):
                build()
        else:
            build()
    prepared = dataset.open_prepared(root, name, tok.name, read, source.spec)
    _check_current(prepared, fetch_root, val_fraction)
    return prepared


PARSER = cli.parser("python -m data.prepare", __doc__)
PARSER.add_argument("--corpus", required=True,
                    help="a registered corpus (`python -m data.fetch` lists them) or a source: "
                         "jsonl:PATTERN, parquet:PATTERN, text:PATTERN, hf:NAME[:CONFIG[:SPLIT]]")
PARSER.add_argument("--tokenizer", default=DEFAULTS.tokenizer,
                    help="byte, bpe, or hf:PATH (a tokenizer.json or its directory)")
PARSER.add_argument("--vocab_size", type=int, default=DEFAULTS.vocab_size, help="bpe only")
PARSER.add_argument("--tokenizer_corpora", default=",".join(DEFAULTS.tokenizer_corpora),
                    help="bpe only: comma-separated sources the tokenizer is trained on (any "
                         "kind --corpus takes; their training documents only)")
PARSER.add_argument("--tokenizer_sample_mb", type=float, default=DEFAULTS.tokenizer_sample_mb,
                    help="bpe only: MiB of training documents the tokenizer is trained on, a "
                         "sample by content hash shared equally among the sources")
cli.add_path(PARSER, "data_root", default=dataset.default_root(), old=("--root",),
             use="$OPTISCALE_DATA_DIR if set, else ~/.cache/optiscale; for a gs:// root, "
                 "registered corpora are fetched to a local cache ($OPTISCALE_DATA_DIR when "
                 "local, else ~/.cache/optiscale) and the tokenizer and arrays go to the "
                 "bucket")
PARSER.add_argument("--val_fraction", type=float, default=DEFAULTS.val_fraction,
                    help="share of the documents held out for validation")
PARSER.add_argument("--text_field", default=DEFAULTS.text_field,
                    help="JSON field or column that holds the documents")
PARSER.add_argument("--workers", type=int, default=DEFAULTS.workers,
                    help="tokenizing processes (0: all cores)")
PARSER.add_argument("--shard_mb", type=float, default=sources.SHARD_BYTES / 2 ** 20,
                    help="input MiB per shard (the output does not depend on it)")


@cli.main(ValueError)
def main(argv) -> None:
    args = PARSER.parse_args(argv)
    start = time.time()
    prepared = ensure_prepared(args.data_root, args.corpus, tokenizer=args.tokenizer,
                               vocab_size=args.vocab_size,
                               tokenizer_corpora=tuple(args.tokenizer_corpora.split(",")),
                               tokenizer_sample_mb=args.tokenizer_sample_mb,
                               val_fraction=args.val_fraction, text_field=args.text_field,
                               workers=args.workers,
                               shard_bytes=max(1, int(args.shard_mb * 2 ** 20)), read=False)
    print(f"{prepared.path} ({time.time() - start:.1f} s): tokenizer {prepared.tokenizer}, "
          f"vocab_size {prepared.vocab_size}")
    for s in (prepared.train, prepared.val):
        print(f"  {s.name:5} {s.num_docs:6d} docs {s.num_tokens:11d} tokens {s.num_bytes:11d} "
              f"bytes  {s.bytes_per_token:.3f} bytes/token")


if __name__ == "__main__":
    sys.exit(main())
