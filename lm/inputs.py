"""From prepared token arrays to device batches: the training stream and the validation sets.

The batch of step s on process p is `data.sampling.train_batch(seed, s, p)`, a pure function,
so a resumed run reads exactly the batches an uninterrupted one would. Batches are split over
the mesh's `data` axis.
"""
import dataclasses
import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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
    per_process = config.train.batch_size // jax.process_count()
    train_batch = functools.partial(sampling.train_batch, train.train, seed=config.train.seed,
                                     process_index=jax.process_index(),
                                     batch_size=per_process, seq_len=d.seq_len)
    return RunData(vocab_size=train.vocab_size, eval_sets=eval_sets,
                   train_batch=lambda step: train_batch(step=step))


def make_mesh(mesh_cfg) -> Mesh:
    """A one-axis ("data") mesh over `mesh_cfg.data` devices (-1: all)."""
    n = jax.device_count() if mesh_cfg.data == -1 else mesh_cfg.data
    return Mesh(np.asarray(jax.devices()[:n]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def to_device(windows: np.ndarray, mesh: Mesh) -> jax.Array:
    """This process's rows of a global batch, sharded over the `data` axis."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    return jax.make_array_from_process_local_data(sharding, windows)
