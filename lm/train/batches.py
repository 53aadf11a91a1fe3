"""From prepared token arrays to device batches: the training stream and the validation sets.

The global batch of step s is a pure function of (seed, s) (`data.sampling.mixture_batch`, over
the sources of data.mixture, or data.corpus alone), so a resumed run reads exactly the batches
an uninterrupted one would. Each process reads only its
own rows (batch_size / process_count of them) and `to_device` assembles the global batch,
split over the mesh axes of the `batch` logical axis (lm/train/sharding.py). Validation windows are
the same on every process; each contributes its share of rows. What a run reads, and preparing
it, is data/needs.py's; in a multi-process run process 0 prepares while the others wait.
"""
import collections
import concurrent.futures
import dataclasses
import functools

import jax
import numpy as np
from jax.sharding import NamedSharding

from data import dataset, needs, prepare, sampling
from lm.train import distributed


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


def _fingerprint(prepared: dataset.PreparedCorpus) -> str:
    """The input's fingerprint (for data prepared before fingerprints: the corpus's sha256)."""
    return prepared.meta.get("fingerprint") or prepared.meta["corpus_sha256"]


def prepared_by_process_0(prepare_all) -> None:
    """In a multi-process run, process 0 runs `prepare_all` (which prepares what is missing)
    while the others wait for it, so that no two processes prepare the same data at once: on a
    bucket nothing else would keep them apart, and on a shared disk they would take turns. An
    error on process 0 stops every process. Then each process opens the data itself (one whose
    data root is a disk of its own host prepares its own copy)."""
    if jax.process_count() == 1:
        return
    error = None
    if jax.process_index() == 0:
        try:
            prepare_all()
        except Exception as err:  # every process must reach the barrier below
            error = err
    if distributed.any_process(error is not None):  # the barrier: all wait for process 0
        if error is not None:
            raise error
        raise ValueError("process 0 could not prepare this run's data (its log says why); "
                         "prepare it before the run with `python -m lm.train.prepare_data "
                         "--config=...` and the run's overrides")


def load(config) -> RunData:
    """Prepares (on first use; in a multi-process run on process 0 first, see
    `prepared_by_process_0`) and opens the training sources and every validation source."""
    d = config.data
    root = d.root or dataset.default_root()
    mixture = needs.training_mixture(d)
    found = needs.resolve_sources(d)
    prepared_by_process_0(lambda: needs.prepare_all(d, root))
    options = needs.prepare_options(d)
    opened = {spec: prepare.ensure_prepared(root, spec, **options) for spec in found}
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
