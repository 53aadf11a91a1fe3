"""From prepared token arrays to device batches: the training stream and the validation sets.

The global batch of step s is a pure function of (seed, s) (`data.sampling.mixture_batch`, over
the sources of data.mixture, or data.corpus alone), so a resumed run reads exactly the batches
an uninterrupted one would. Each process reads only its
own rows (batch_size / process_count of them) and `to_device` assembles the global batch,
split over the mesh axes of the `batch` logical axis (lm/train/sharding.py). Validation windows are
the same on every process; each contributes its share of rows.
"""
import collections
import concurrent.futures
import dataclasses
import functools

import jax
import numpy as np
from jax.sharding import NamedSharding

from data import dataset, prepare, sampling, sources


@dataclasses.dataclass
class EvalSet:
    """Fixed validation windows of one corpus, identical at every evaluation."""
    batches: list  # of np.ndarray (eval_batch_size, seq_len + 1)
    bytes_per_token: float

    @property
    def num_targets(self) -> int:
        return sum(b[:, 1:].size for b in self.batches)


@dataclasses.dataclass
class RunData:
    vocab_size: int
    eval_sets: dict  # source name -> EvalSet
    train_batch: callable  # step -> np.ndarray (process batch, seq_len + 1) int32
    inputs: dict  # source name -> {source, path, fingerprint}: what WORKDIR/data.json records


def training_mixture(data_config) -> dict:
    """{source: weight} of the training data: data.mixture, else {data.corpus: 1}; weights are
    checked before any data is read."""
    mixture = dict(data_config.mixture or {}) or {data_config.corpus: 1.0}
    for source, weight in mixture.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"data.mixture[{source!r}]={weight!r}: weights must be numbers >= 0")
    if not sum(mixture.values()) > 0:
        raise ValueError(f"data.mixture={mixture}: the weights sum to 0; give at least one "
                         "source a positive weight")
    return mixture


def resolve_sources(data_config) -> dict:
    """spec -> data.sources.Source for every training and validation source of a run (names
    checked, no file read)."""
    return sources.resolve_all([*training_mixture(data_config), *data_config.eval_corpora],
                               dict(data_config.sources or {}), data_config.text_field)


def _fingerprint(prepared: dataset.PreparedCorpus) -> str:
    """The input's fingerprint (for data prepared before fingerprints: the corpus's sha256)."""
    return prepared.meta.get("fingerprint") or prepared.meta["corpus_sha256"]


def load(config) -> RunData:
    """Prepares (on first use) and opens the training sources and every validation source."""
    d = config.data
    root = d.root or dataset.default_root()
    mixture = training_mixture(d)
    found = resolve_sources(d)
    opened = {spec: prepare.ensure_prepared(
                  root, spec, tokenizer=d.tokenizer, vocab_size=d.vocab_size,
                  tokenizer_corpora=tuple(d.tokenizer_corpora), val_fraction=d.val_fraction,
                  named_sources=dict(d.sources or {}), text_field=d.text_field,
                  workers=d.workers)
              for spec in found}
    eval_sets = {}
    for spec in d.eval_corpora:
        split = opened[spec].val
        batches = sampling.eval_batches(split, seq_len=d.seq_len, batch_size=d.eval_batch_size,
                                        num_batches=d.eval_batches)
        eval_sets[found[spec].name] = EvalSet(batches=batches,
                                              bytes_per_token=split.bytes_per_token)
    train_batch = functools.partial(sampling.mixture_batch,
                                    [opened[spec].train for spec in mixture],
                                    list(mixture.values()), seed=config.train.seed,
                                    batch_size=config.train.batch_size, seq_len=d.seq_len,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
    inputs = {found[spec].name: dict(source=spec, path=p.path, fingerprint=_fingerprint(p))
              for spec, p in opened.items()}
    return RunData(vocab_size=max(p.vocab_size for p in opened.values()), eval_sets=eval_sets,
                   train_batch=lambda step: train_batch(step=step), inputs=inputs)


def process_rows(windows: np.ndarray) -> np.ndarray:
    """This process's share of a batch that every process holds in full."""
    per_process = windows.shape[0] // jax.process_count()
    return windows[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]


def to_device(windows: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """The global batch from each process's rows, laid out as `sharding` says."""
    return jax.make_array_from_process_local_data(sharding, windows)


class Prefetcher:
    """The device batches of steps `start`, `start` + 1, ..., each read and transferred on a
    background thread `depth` steps ahead of the loop (as levanter's and MaxText's loaders do),
    so that the host's work on the next batch overlaps the device's work on this step. A step's
    batch is the same whatever the timing: `train_batch(step)` is a pure function."""

    def __init__(self, train_batch, sharding: NamedSharding, start: int, depth: int = 1):
        self._build = lambda step: to_device(train_batch(step), sharding)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._pending = collections.deque(self._pool.submit(self._build, step)
                                          for step in range(start, start + depth))
        self._next = start + depth

    def next(self) -> jax.Array:
        """The next step's batch (raising what building it raised); starts building the one
        `depth` steps later."""
        batch = self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._build, self._next))
        self._next += 1
        return batch

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
