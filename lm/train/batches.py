"""From prepared token arrays to device batches: the training stream and the validation sets.

The global batch of step s is a pure function of (seed, s) (`data.sampling.train_batch`), so a
resumed run reads exactly the batches an uninterrupted one would. Each process reads only its
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

from data import dataset, prepare, sampling


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
    eval_sets: dict  # corpus name -> EvalSet
    train_batch: callable  # step -> np.ndarray (process batch, seq_len + 1) int32


def load(config) -> RunData:
    """Prepares (on first use) and opens the training corpus and every validation corpus."""
    d = config.data
    root = d.root or dataset.default_root()
    opened = {}
    for corpus in dict.fromkeys((d.corpus, *d.eval_corpora)):
        opened[corpus] = prepare.ensure_prepared(
            root, corpus, tokenizer=d.tokenizer, vocab_size=d.vocab_size,
            tokenizer_corpora=tuple(d.tokenizer_corpora), val_fraction=d.val_fraction)
    train = opened[d.corpus]
    eval_sets = {}
    for corpus in d.eval_corpora:
        split = opened[corpus].val
        batches = sampling.eval_batches(split, seq_len=d.seq_len, batch_size=d.eval_batch_size,
                                        num_batches=d.eval_batches)
        eval_sets[corpus] = EvalSet(batches=batches, bytes_per_token=split.bytes_per_token)
    train_batch = functools.partial(sampling.train_batch, train.train, seed=config.train.seed,
                                     batch_size=config.train.batch_size, seq_len=d.seq_len,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count())
    return RunData(vocab_size=train.vocab_size, eval_sets=eval_sets,
                   train_batch=lambda step: train_batch(step=step))


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
