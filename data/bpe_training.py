"""Trains a byte-level BPE on any sources, on a bounded sample: `data.prepare` and
`python -m data.tokenizer train` use it.

A BPE tokenizer is trained on `tokenizer_corpora`: any sources, as `--corpus` takes, one or
several. It sees a sample of their training documents only (split with the same
`val_fraction`, so never a validation document) of at most `tokenizer_sample_mb` MiB, read
shard by shard, so memory does not grow with the corpora: the documents with the smallest
content hashes that fit (`_sample`), a uniform random sample that depends on the documents
only. The sample is shared equally among the sources, smallest first, a source within its
share giving all its training documents and leaving the rest to the larger ones; sources
that fit in the sample together are used whole. The tokenizer is saved under
`ROOT/tokenizers/<id>/` (id: `bpe<V>-` and a hash of its tokenizer.json, which the same input
reproduces exactly), with `recipes/<key>.json`, the key a hash of the sources' fingerprints
(`data.sources.fingerprint`; a registered corpus's: its docs.jsonl sha256), vocab_size,
val_fraction and the sample size: changed input trains a new tokenizer, unchanged input finds
the stored one without reading a document. `python -m data.tokenizer train` writes such a
tokenizer to a directory of your choice.
"""
import dataclasses
import hashlib
import heapq
import json
import math
import re
from typing import Iterator, Optional

from core import cli
from data import corpora, dataset, fetch, sources, split, store
from data.settings import DATA
from data.tokenizer import DOCS_PER_BATCH, EOS_TEXT, bpe_id, tokenizer_dir, train_bpe

DEFAULTS = DATA.config_dict()

MIN_BPE_VOCAB = 258  # 256 byte tokens, the end-of-document token and at least one merge
SAMPLE_RULE = "sha256-bottom-k/1"  # names the sample rule (`_sample`) in the recipe key


@dataclasses.dataclass
class BpeInput:
    """One source of a BPE's training sample, and what it gave (set while sampling)."""
    source: sources.Source
    fingerprint: str  # a registered corpus's docs.jsonl sha256, else sources.fingerprint's
    input_bytes: Optional[int]  # its input's size (file sizes, a corpus's or dataset's text);
    # None for a registered corpus until it is fetched
    share: int = 0  # bytes of the sample allotted to it
    train_docs: int = 0  # documents of its training split (all of them are read)
    train_bytes: int = 0
    docs: int = 0  # documents in the sample
    bytes: int = 0

    def record(self) -> dict:
        return dict(source=self.source.spec, fingerprint=self.fingerprint,
                    input_bytes=self.input_bytes, share=self.share, train_docs=self.train_docs,
                    train_bytes=self.train_bytes, docs=self.docs, bytes=self.bytes)

    def summary(self) -> str:
        whole = " (whole)" if self.docs == self.train_docs else ""
        return (f"{self.source.spec}: {self.bytes / 2 ** 20:.1f} MiB of "
                f"{self.train_bytes / 2 ** 20:.1f} MiB{whole}")


@dataclasses.dataclass
class BpePlan:
    """What a BPE is trained on, checked before any long work. `key` names its recipe: the
    fingerprints of its sources and every setting that changes the sample or the training."""
    inputs: list[BpeInput]  # sorted when sampled: smallest input first
    vocab_size: int
    val_fraction: float
    sample_bytes: int

    @property
    def recipe(self) -> dict:
        return dict(vocab_size=self.vocab_size, val_fraction=self.val_fraction,
                    sample_bytes=self.sample_bytes, sample_rule=SAMPLE_RULE,
                    sources=sorted(i.fingerprint for i in self.inputs))

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:16]

    def record(self) -> dict:
        """The recipe, with what each source gave (recipes/<key>.json)."""
        return dict(self.recipe, inputs=[i.record() for i in self.inputs])


def bpe_sample_bytes(vocab_size: int, sample_mb: float, val_fraction: float) -> int:
    """The sample's size in bytes; a ValueError naming the fix for a setting no BPE can have."""
    if vocab_size < MIN_BPE_VOCAB:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE: its 256 "
                         f"byte tokens and {EOS_TEXT} take 257, so use at least {MIN_BPE_VOCAB} "
                         "(8192 is the default)")
    if not (isinstance(sample_mb, (int, float)) and math.isfinite(sample_mb) and sample_mb > 0):
        raise ValueError(f"tokenizer_sample_mb={sample_mb} must be a number of MiB > 0 (the "
                         "BPE's training sample; default "
                         f"{DEFAULTS.tokenizer_sample_mb})")
    split.threshold(val_fraction)
    return max(1, int(sample_mb * 2 ** 20))


class NotFetched(Exception):
    """A registered corpus without a pinned sha256 is not fetched yet (and may not be now)."""


def corpus_sha256(name: str, fetch_root, may_fetch: bool = True) -> str:
    """The docs.jsonl sha256 of registered corpus `name`: pinned in data/corpora.py, else that
    of the committed sample or of the fetched copy (fetched now if it is not here yet and
    `may_fetch`, else NotFetched)."""
    pinned = corpora.get(name).sha256
    if pinned:
        return pinned
    manifest = fetch.local_manifest(fetch_root, name)
    if manifest is None and not may_fetch:
        raise NotFetched(name)
    return (manifest or fetch.ensure_fetched(fetch_root, name)[1])["sha256"]


def _input(source: sources.Source, fetch_root, may_fetch: bool = True) -> BpeInput:
    """The source's fingerprint and, but for a registered corpus, its size (no document read)."""
    if source.registered:
        return BpeInput(source, corpus_sha256(source.target, fetch_root, may_fetch), None)
    fingerprint = sources.fingerprint(source, fetch_root)
    if source.kind == "hf":
        size = sources.hf_dataset(source.target).data.nbytes
    else:
        size = sum(f["size"] for f in fingerprint["files"])
    if size == 0:
        raise sources.SourceError(f"tokenizer source {source.spec!r} is empty (0 bytes of "
                                  "input); give it documents or leave it out")
    return BpeInput(source, fingerprint["sha256"], size)


def bpe_plan(fetch_root, tokenizer_corpora, *, vocab_size: int = DEFAULTS.vocab_size,
             val_fraction: float = DEFAULTS.val_fraction,
             sample_mb: float = DEFAULTS.tokenizer_sample_mb, named_sources=None,
             text_field: str = DEFAULTS.text_field, may_fetch: bool = True) -> BpePlan:
    """The plan of a BPE trained on sources `tokenizer_corpora` (anything `data.sources`
    resolves), checked before any long work: settings, source names and files; no document is
    read, and a registered corpus with a pinned sha256 is not fetched (`fetch_root`: where
    other registered corpora are, or are fetched unless not `may_fetch`)."""
    sample_bytes = bpe_sample_bytes(vocab_size, sample_mb, val_fraction)
    specs = [tokenizer_corpora] if isinstance(tokenizer_corpora, str) else list(tokenizer_corpora)
    if not specs or not all(specs):
        raise ValueError(f"tokenizer_corpora={tokenizer_corpora!r}: name the sources the bpe "
                         "tokenizer trains on, e.g. en_docs,code_py or 'jsonl:/data/*.jsonl'")
    found = {}
    for spec in specs:
        item = _input(sources.resolve(spec, named_sources, text_field), fetch_root, may_fetch)
        found.setdefault(item.fingerprint, item)  # a source named twice counts once
    return BpePlan(list(found.values()), vocab_size, val_fraction, sample_bytes)


def _sample(item: BpeInput, fetch_root, val_threshold: int) -> list[bytes]:
    """The documents of `item.source` in the sample (UTF-8), streamed shard by shard.

    Only training documents count (validation ones, by `data.split`'s rule, are skipped), and of
    those the ones with the smallest content hashes (`split.document_key`, whose high bits the
    split does not use) are kept, as many as fit in `item.share` bytes: a max-heap holds the
    kept ones, and when they exceed the share the largest hashes leave and no later document
    with a hash as large is taken. So memory stays under the share, and the sample is a uniform
    random one that depends on the documents only (not on their order or the shards); a source
    within its share is used whole."""
    kept, size, limit = [], 0, None  # kept: (-hash, document) of the documents hashed < limit
    lowest_train = highest_val = None  # the documents nearest the split threshold
    val_docs = 0
    shards = sources.plan(item.source, fetch_root, sources.SHARD_BYTES)
    for shard in cli.progress(shards, unit="shard", desc=f"BPE sample of {item.source.name}"):
        for text in sources.documents(item.source, shard):
            key = split.document_key(text)
            data = text.encode()
            order = split.order_key(key)
            if split.is_validation(key, val_threshold):
                val_docs += 1
                if highest_val is None or order > highest_val[0]:
                    highest_val = (order, data)
                continue
            item.train_docs += 1
            item.train_bytes += len(data)
            if lowest_train is None or order < lowest_train[0]:
                lowest_train = (order, len(data))
            if limit is not None and key >= limit:
                continue
            heapq.heappush(kept, (-key, data))
            size += len(data)
            while size > item.share:  # the largest hashes leave, with any copies of theirs
                limit = -kept[0][0]
                while kept and -kept[0][0] >= limit:
                    size -= len(heapq.heappop(kept)[1])
    if item.train_docs + val_docs < 2:
        raise sources.SourceError(f"{item.source.spec} has {item.train_docs + val_docs} "
                                  "document(s), but a train/validation split needs at least 2; "
                                  "add documents")
    if not val_docs:  # the split moves the training document nearest the threshold to validation
        (_, moved), num_bytes = lowest_train
        item.train_docs, item.train_bytes = item.train_docs - 1, item.train_bytes - num_bytes
        at = next((i for i, (k, _) in enumerate(kept) if -k == moved), None)
        if at is not None:
            size -= len(kept.pop(at)[1])
    if not item.train_docs:  # ... or the validation document nearest it to training
        (_, moved), data = highest_val
        item.train_docs, item.train_bytes = 1, len(data)
        kept, size = ([(-moved, data)], len(data)) if len(data) <= item.share else ([], 0)
    item.docs, item.bytes = len(kept), size
    return [data for _, data in kept]


def _bpe_batches(plan: BpePlan, fetch_root) -> Iterator[list[str]]:
    """The sample's documents in batches. The sample is shared equally among the sources, the
    smallest first: each gets (bytes left) / (sources left), and what a source leaves unused
    goes to the larger ones after it."""
    for item in plan.inputs:
        if item.input_bytes is None:
            item.input_bytes = fetch.ensure_fetched(fetch_root, item.source.target)[1]["num_bytes"]
    plan.inputs.sort(key=lambda i: (i.input_bytes, i.fingerprint))
    left = plan.sample_bytes
    val_threshold = split.threshold(plan.val_fraction)
    for i, item in enumerate(plan.inputs):
        item.share = left // (len(plan.inputs) - i)
        docs = _sample(item, fetch_root, val_threshold)
        left -= item.bytes
        for start in range(0, len(docs), DOCS_PER_BATCH):
            yield [d.decode() for d in docs[start:start + DOCS_PER_BATCH]]
        del docs  # before the next source's sample is read


def find_bpe(root, plan: BpePlan) -> Optional[str]:
    """The id of the tokenizer trained under `root` for this plan's recipe, if there is one."""
    found = sorted(k for k in store.list_keys(store.join(root, "tokenizers"))
                   if re.fullmatch(rf"bpe{plan.vocab_size}-[0-9a-f]+/recipes/{plan.key}\.json",
                                   k))
    return found[0].split("/")[0] if found else None


def find_bpe_tokenizer(root, *, vocab_size: int = DEFAULTS.vocab_size,
                       tokenizer_corpora=tuple(DEFAULTS.tokenizer_corpora),
                       val_fraction: float = DEFAULTS.val_fraction,
                       tokenizer_sample_mb: float = DEFAULTS.tokenizer_sample_mb,
                       named_sources=None, text_field: str = DEFAULTS.text_field
                       ) -> Optional[str]:
    """The id of the bpe tokenizer trained for these settings under `root`, None if there is
    none yet: `ensure_tokenizer`'s lookup, without training or fetching (a registered corpus
    that is neither pinned nor fetched yet: None). Pattern sources' files are listed, and an hf:
    dataset is loaded, for their fingerprints."""
    try:
        plan = bpe_plan(dataset.local_root(root), tokenizer_corpora, vocab_size=vocab_size,
                        val_fraction=val_fraction, sample_mb=tokenizer_sample_mb,
                        named_sources=named_sources, text_field=text_field, may_fetch=False)
    except NotFetched:
        return None
    return find_bpe(root, plan)


def train_bpe_tokenizer(root, plan: BpePlan) -> str:
    """Trains the plan's BPE and stores it under `root` with its recipe; returns its id."""
    tokenizer_json = train_bpe(_bpe_batches(plan, dataset.local_root(root)), plan.vocab_size)
    if not any(i.docs for i in plan.inputs):
        raise ValueError(f"the BPE's sample holds no document: each training document is larger "
                         f"than the sample ({plan.sample_bytes} bytes); raise "
                         "tokenizer_sample_mb")
    tokenizer_id = bpe_id(plan.vocab_size, tokenizer_json)
    path = tokenizer_dir(root, tokenizer_id)
    store.write_bytes(store.join(path, "tokenizer.json"), tokenizer_json.encode())
    store.write_json(store.join(path, "recipes", f"{plan.key}.json"), plan.record())
    print(f"tokenizer {tokenizer_id}: trained on "
          f"{sum(i.bytes for i in plan.inputs) / 2 ** 20:.1f} MiB of training documents ("
          f"{'; '.join(i.summary() for i in plan.inputs)})", flush=True)
    return tokenizer_id
