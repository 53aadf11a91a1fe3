"""Data at scale: preparation throughput and memory, and training reads against the train step.

    python -m benchmarks.data_pipeline [--gb 1.0] [--scratch_dir /tmp/optiscale_data_bench]
        [--bpe_mb 128] [--config configs/base.py:d128_l4]

1. Writes a corpus of --gb GB of real text: the documents of the embedded corpora en_docs and
   code_py (fetched on first use), shuffled and repeated with a fixed seed, as 64 MB jsonl
   files and as parquet files (8 MB row groups). Its first half is the --gb/2 corpus.
2. Prepares it with `python -m data.prepare` in a subprocess, timed, while the resident memory
   of the whole process tree (the preparation and its workers) is sampled every 0.1 s:
   jsonl at --gb/2 and --gb with 1 and 2 workers, parquet at --gb with 2 workers, with the byte
   tokenizer (the pipeline's own cost: reading, parsing, hashing, writing), then the project's
   BPE (4096, the quickstart's) on the first --bpe_mb MB with 1 and 2 workers, where the
   tokenizer's encoding is the bottleneck.
3. Reads training batches (data.sampling.mixture_batch, --config's batch and sequence length)
   from the prepared train split through TensorStore, in the new layout (zarr v3 shards of
   8M tokens, 8K-token chunks) and in the old one (zarr v2, 1M-token chunks), on the same
   tokens, and times --config's jitted train step on this machine (benchmarks.host_loop).

4. Times training's data check (data/integrity.py) on the prepared 1 GB train split: every
   shard checked once, against its file hash (what training does) and against its token hash
   (a preparation from before file hashes), and batches read from a fresh split with and
   without the check; the check's whole cost is set against a run of configs/quickstart.py
   (its steps times its step, timed here) and against one of --config.

Prints one JSON line per measurement; `read_s / step_s` < 1 means the reads keep up (the loop
reads the next batch on a background thread while the step runs).
"""
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import tensorstore as ts

from benchmarks.host_loop import bare_step_seconds
from configs import quickstart as quickstart_config
from core import cli
from data import dataset, documents, fetch, prepare, sampling, store
from data.integrity import BlockCheck
from lm.errors import ConfigError
from lm.train import config_flag

FILE_BYTES = 64 << 20
ROW_GROUP_BYTES = 8 << 20


def write_corpus(directory: str, total_bytes: int, seed: int = 0) -> dict:
    """jsonl/part-NNNNN.jsonl and parquet/part-NNNNN.parquet, the same documents in the same
    order; returns the counts."""
    texts = []
    for corpus in ("en_docs", "code_py"):
        docs_path, _ = fetch.ensure_fetched(dataset.default_root(), corpus)
        texts += list(documents.read_texts(docs_path))
    rng = random.Random(seed)
    for kind in ("jsonl", "parquet"):
        os.makedirs(os.path.join(directory, kind), exist_ok=True)
    written = num_docs = files = 0
    while written < total_bytes:
        rng.shuffle(texts)
        for start in range(0, len(texts), 64):
            if written >= total_bytes:
                break
            batch, size = [], 0
            for text in texts[start:start + 64]:
                batch.append(text)
                size += len(text.encode())
            path = os.path.join(directory, "jsonl", f"part-{files:05d}.jsonl")
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in batch)
            written += size
            num_docs += len(batch)
            if os.path.getsize(path) >= FILE_BYTES:
                files += 1
    paths = sorted(os.listdir(os.path.join(directory, "jsonl")))
    for name in paths:
        rows = [json.loads(line)["text"] for line in open(os.path.join(directory, "jsonl", name))]
        per_row = sum(len(r) for r in rows) / max(len(rows), 1)
        pq.write_table(pa.table({"text": rows}),
                       os.path.join(directory, "parquet", name.replace(".jsonl", ".parquet")),
                       row_group_size=max(1, int(ROW_GROUP_BYTES / per_row)))
    return dict(num_bytes=written, num_docs=num_docs, num_files=len(paths))


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def timed_prepare(root: str, args: list[str]) -> dict:
    """Runs `python -m data.prepare ARGS --data_root ROOT` (after deleting ROOT/prepared): seconds
    and peak resident memory of its process tree."""
    shutil.rmtree(os.path.join(root, "prepared"), ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "data.prepare", *args, "--data_root", root],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, watched = 0, psutil.Process(proc.pid)

    def sample():
        nonlocal peak
        while proc.poll() is None:
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"data.prepare {' '.join(args)} failed:\n{out[-3000:]}")
    return dict(seconds=round(seconds, 2), peak_rss_mb=round(peak / 2 ** 20, 1))


def prepared_split(root: str, spec: str, tokenizer: str) -> dataset.Split:
    """The train split of `spec`, always through TensorStore (whatever its size), with its block
    check."""
    prepared = prepare.ensure_prepared(root, spec, tokenizer=tokenizer, vocab_size=4096,
                                       workers=1, read=False)
    tokens = store.open_tokens(store.join(prepared.path, "train.zarr"))
    s = prepared.train
    return dataset.Split(s.corpus, "train", tokens, s.num_docs, s.num_tokens, s.num_bytes,
                         s.check)


def old_layout_copy(split: dataset.Split, path: str, num_tokens: int) -> dataset.Split:
    """The first `num_tokens` tokens of `split` in the pre-zarr3 layout (zarr v2, 2^20-token
    chunks, the same compressor)."""
    shutil.rmtree(path, ignore_errors=True)
    tokens = split.tokens[:num_tokens].read().result()
    array = ts.open({"driver": "zarr", "kvstore": store.kvstore_spec(path),
                     "metadata": {"shape": [num_tokens], "chunks": [1 << 20],
                                  "dtype": tokens.dtype.str,
                                  "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5,
                                                 "shuffle": 1}}},
                    create=True).result()
    array.write(tokens).result()
    return dataset.Split(split.corpus, "train", store.open_tokens(path, "zarr"), 1, num_tokens,
                         num_tokens)


def read_seconds(split: dataset.Split, batch_size: int, seq_len: int, batches: int) -> float:
    """Seconds per training batch read from `split` (steps never read before: no cache hits
    beyond what real training would get)."""
    sampling.mixture_batch([split], [1.0], seed=1, step=0, batch_size=batch_size,
                           seq_len=seq_len)
    start = time.perf_counter()
    for step in range(1, batches + 1):
        sampling.mixture_batch([split], [1.0], seed=1, step=step, batch_size=batch_size,
                               seq_len=seq_len)
    return (time.perf_counter() - start) / batches


def fresh_check(split: dataset.Split, by_file: bool) -> BlockCheck:
    """`split`'s check with no block checked yet, as in a new process, against the shard file
    hashes (`by_file`, what training does) or the token hashes of its meta.json."""
    c = split.check
    return BlockCheck(c.array_path, c.preparation, c.block_hashes, c.num_tokens,
                      c.shard_hashes if by_file else None)


def check_seconds(split: dataset.Split, by_file: bool) -> float:
    """Seconds to check every shard of `split` once (`fresh_check`)."""
    check = fresh_check(split, by_file)
    start = time.perf_counter()
    for block in range(len(check.block_hashes)):
        check.windows(split.tokens, np.array([block * store.SHARD]), 1)
    return time.perf_counter() - start


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


PARSER = cli.parser("python -m benchmarks.data_pipeline", __doc__)
PARSER.add_argument("--gb", type=float, default=1.0, help="size of the generated corpus")
PARSER.add_argument("--scratch_dir", default="/tmp/optiscale_data_bench", old=("--dir",),
                    help="the generated corpus, its data root and copies (kept for a rerun)")
PARSER.add_argument("--bpe_mb", type=float, default=128,
                    help="MiB of the corpus the BPE preparations tokenize")
config_flag.add_config(PARSER, "configs/base.py:d128_l4")  # its batches and train step
PARSER.add_argument("--read_batches", type=int, default=50, help="batches read per layout")


@cli.main(ConfigError)
def main(argv) -> None:
    args, config = config_flag.parse(PARSER, argv)
    corpus_dir = os.path.join(args.scratch_dir, "corpus")
    root = os.path.join(args.scratch_dir, "root")
    marker = os.path.join(corpus_dir, "counts.json")
    if not os.path.exists(marker) or json.load(open(marker))["gb"] != args.gb:
        shutil.rmtree(corpus_dir, ignore_errors=True)
        counts = write_corpus(corpus_dir, int(args.gb * 1e9))
        json.dump(dict(counts, gb=args.gb), open(marker, "w"))
    counts = json.load(open(marker))
    emit(dict(bench="data_corpus", **counts, cpus=os.cpu_count()))
    half = counts["num_files"] // 2

    def first_files(kind: str, n: int) -> list[str]:
        return [f"{corpus_dir}/{kind}/part-{i:05d}.{kind}" for i in range(n)]

    runs = [("jsonl", "byte", half, 1), ("jsonl", "byte", counts["num_files"], 1),
            ("jsonl", "byte", counts["num_files"], 2), ("parquet", "byte", counts["num_files"], 2)]
    bpe_files = max(1, round(args.bpe_mb * 2 ** 20 / FILE_BYTES))
    runs += [("jsonl", "bpe", bpe_files, 1), ("jsonl", "bpe", bpe_files, 2)]
    prepare.ensure_tokenizer(root, "bpe", vocab_size=4096)  # trained once, outside the timings
    for kind, tokenizer, num_files, workers in runs:
        subset = os.path.join(args.scratch_dir, f"{kind}-{num_files}")
        if not os.path.isdir(subset):
            os.makedirs(subset)
            for path in first_files(kind, num_files):
                os.symlink(path, os.path.join(subset, os.path.basename(path)))
        num_bytes = sum(os.path.getsize(p) for p in first_files(kind, num_files))
        timing = timed_prepare(root, ["--corpus", f"{kind}:{subset}/*.{kind}", "--tokenizer",
                                      tokenizer, "--vocab_size", "4096",
                                      "--workers", str(workers)])
        emit(dict(bench="data_prepare", format=kind, tokenizer=tokenizer, files=num_files,
                  input_mb=round(num_bytes / 1e6, 1), workers=workers, **timing,
                  input_mb_per_s=round(num_bytes / 1e6 / timing["seconds"], 2)))

    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    subset = os.path.join(args.scratch_dir, f"jsonl-{counts['num_files']}")
    split = prepared_split(root, f"jsonl:{subset}/*.jsonl", "byte")
    old = old_layout_copy(split, os.path.join(args.scratch_dir, "old_layout.zarr"), 1 << 26)
    new = dataset.Split(split.corpus, "train", split.tokens[:1 << 26], 1, 1 << 26, 1 << 26)
    reads = {name: read_seconds(s, batch_size, seq_len, args.read_batches)
             for name, s in (("zarr3, 8M-token shards of 8K-token chunks", new),
                             ("zarr v2, 1M-token chunks (before)", old),
                             ("zarr3, whole 1 GB array", split))}
    checked_reads = {by_file: read_seconds(dataclasses.replace(split, check=fresh_check(
        split, by_file)), batch_size, seq_len, args.read_batches) for by_file in (True, False)}
    checks = {by_file: check_seconds(split, by_file) for by_file in (True, False)}
    config.data.update(dict(root=root, corpus="en_docs", eval_corpora=("en_docs",)))
    step_s = bare_step_seconds(config, 20)
    for layout, seconds in reads.items():
        emit(dict(bench="data_read", layout=layout, config=args.config, batch=batch_size,
                  seq_len=seq_len, read_s=round(seconds, 5),
                  tokens_per_s=round(batch_size * (seq_len + 1) / seconds),
                  step_s=round(step_s, 4), read_s_over_step_s=round(seconds / step_s, 4)))
    quickstart = quickstart_config.get_config()
    quickstart.data.update(dict(root=root, corpus="en_docs", eval_corpora=("en_docs",)))
    quickstart_step_s = bare_step_seconds(quickstart, 20)
    for by_file in (True, False):
        runs = {"configs/quickstart.py": (quickstart.train.steps, quickstart_step_s),
                args.config: (config.train.steps, step_s)}
        emit(dict(bench="data_check", hashes="shard files" if by_file else "tokens",
                  shards=len(split.check.block_hashes), check_all_s=round(checks[by_file], 3),
                  read_s_unchecked=round(reads["zarr3, whole 1 GB array"], 5),
                  read_s_checked_from_cold=round(checked_reads[by_file], 5),
                  read_batches=args.read_batches,
                  **{f"check_all_over_run[{name}: {steps} steps of {step:.4f} s]":
                     round(checks[by_file] / (steps * step), 4)
                     for name, (steps, step) in runs.items()}))


if __name__ == "__main__":
    sys.exit(main())
