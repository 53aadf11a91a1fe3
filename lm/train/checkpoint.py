"""Orbax checkpoints of the train state: save every k steps, keep the last n, async writes, and a
resume that falls back past a corrupt latest checkpoint without deleting any good one.

Layout: WORKDIR/checkpoints/<step>/{state,meta}; a checkpoint that fails to restore is moved,
not deleted, to WORKDIR/checkpoints_corrupt/<step> so that the next save of that step can land.
A reader of a run (lm.sample) skips such a checkpoint, or one being written, and moves nothing.
Arrays are saved with their shardings and restored onto the target shardings of the abstract
state given (any mesh: save with fsdp=8, restore with data=2,fsdp=4 or on one device); in a
multi-process run every process calls save and restore, and Orbax writes each shard once.
The workdir may be a gs:// URL: Orbax writes there itself, and the move aside goes through
lm/train/workdir.py's path layer.
"""
import contextlib
import os
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from lm.errors import ConfigError
from lm.train import workdir as run_files


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message says what to do."""


class Checkpointer:
    """A thin wrapper of `ocp.CheckpointManager` with the restore policy described above."""

    def __init__(self, workdir: str, max_to_keep: int, async_save: bool = True,
                 read_only: bool = False):
        workdir = run_files.absolute(workdir)
        self.directory = os.path.join(workdir, run_files.CHECKPOINTS)
        self.corrupt_directory = os.path.join(workdir, run_files.CORRUPT_CHECKPOINTS)
        self._options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else max_to_keep,
                                                     create=not read_only, read_only=read_only,
                                                     enable_async_checkpointing=async_save)
        self._manager = self._open()

    def _open(self):
        return ocp.CheckpointManager(self.directory, options=self._options,
                                     item_names=("state", "meta"))

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        """Starts saving `state` (a pytree of arrays) and JSON `meta` at `step`, with the state's
        checksums in meta; returns once the arrays are copied off the training buffers, writing
        on in the background."""
        meta = dict(meta, state_checksums=state_checksums(state))
        with self._writing():
            self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             meta=ocp.args.JsonSave(meta)))

    @contextlib.contextmanager
    def _writing(self):
        """Turns a failed checkpoint write (a full disk, a lost bucket; Orbax raises it at the
        next save or wait) into a CheckpointWriteError that says what to do."""
        try:
            yield
        except Exception as err:  # orbax wraps the writer's error in several types
            raise CheckpointWriteError(
                f"writing a checkpoint to {self.directory} failed ({type(err).__name__}: "
                f"{_first_line(err)}). Free space (or lower train.keep_checkpoints) and rerun the "
                "same command: the run resumes from its newest complete checkpoint") from err

    def restore_latest(self, abstract_state):
        """(step, state, meta) of the newest checkpoint that restores, or None if none exists.

        A checkpoint that fails to restore is reported and moved aside; the next older one is
        tried. Raises if checkpoints exist but none restores (nothing is deleted).
        """
        for step in reversed(self.steps()):
            try:
                return step, *self.restore(step, abstract_state)
            except Exception as err:  # orbax raises many types for truncated/missing files
                self._set_aside(step, err)
        if run_files.listdir(self.corrupt_directory):
            raise RuntimeError(
                f"no checkpoint in {self.directory} could be restored; the unreadable ones are "
                f"in {self.corrupt_directory}. Start a new run with another --workdir, or "
                "repair them and move them back.")
        return None

    def restore_readable(self, abstract_state, step: int = -1, flag: str = "--step") -> tuple:
        """(step, state, meta) for a reader of a run that may be writing still (lm.sample, a
        branch): the checkpoint at `step`, or with -1 the newest one that restores. A newer one
        that fails (being written, or damaged) is skipped with a one-line warning and left in
        place: only the run's own resume (restore_latest) moves one aside. ConfigError, naming
        `flag` (the reader's setting of `step`) and the steps to give instead, when `step`'s
        checkpoint or every checkpoint fails."""
        steps = self.steps()
        for candidate in reversed(steps) if step == -1 else [step]:
            try:
                return candidate, *self.restore(candidate, abstract_state)
            except Exception as err:  # orbax raises many types for truncated/missing files
                damage = (f"the checkpoint at step {candidate} in {self.directory} is incomplete "
                          f"or damaged ({type(err).__name__}: {_first_line(err)})")
                if step != -1:
                    others = [s for s in steps if s != step]
                    raise ConfigError(f"{flag}={step}: {damage}; give another of its steps "
                                      f"{others} (-1: the newest that restores)") from err
                print(f"warning: {damage}; falling back to the previous one", file=sys.stderr,
                      flush=True)
        raise ConfigError(f"no checkpoint in {self.directory} restores (steps {steps}): train "
                          "the run again, or repair them")

    def restore(self, step: int, abstract_state) -> tuple:
        """(state, meta) of the checkpoint at `step`, onto `abstract_state`'s shardings."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        check_restored(restored.state, restored.meta)
        return restored.state, restored.meta

    def _set_aside(self, step: int, err: Exception) -> None:
        """Moves the checkpoint aside (process 0 does; the others wait for it)."""
        self._manager.close()
        if jax.process_index() == 0:
            target = os.path.join(self.corrupt_directory, str(step))
            suffix = 1
            while run_files.exists(target):
                target = os.path.join(self.corrupt_directory, f"{step}.{suffix}")
                suffix += 1
            message = (f"checkpoint at step {step} is incomplete or corrupt "
                       f"({type(err).__name__}: {str(err)[:300]}); moved it to {target} and "
                       "falling back to the previous checkpoint")
            logging.warning(message)
            print(f"WARNING: {message}", flush=True)
            run_files.move(os.path.join(self.directory, str(step)), target)
        multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
        self._manager = self._open()

    def wait(self) -> None:
        """Blocks until every async save has been written (raises if one failed)."""
        with self._writing():
            self._manager.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self._manager.close()


def _first_line(err: Exception) -> str:
    """The first line of an error's message, at most 300 characters: Orbax's run to pages."""
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""


def _leaf_checksum(x) -> jax.Array:
    """sum_i bits_i * (2 i + 1) mod 2^32 over the elements' bit patterns, i the flat index: odd
    weights, so that any single flipped bit, and most swaps, change it. The index comes from
    iotas in the leaf's own shape, so a sharded leaf is summed where it lies, never gathered."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    width = min(x.dtype.itemsize, 4) * 8  # 8-byte elements become two uint32 (a new last axis)
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{width}")).astype(jnp.uint32)
    index, stride = jnp.zeros(bits.shape, jnp.uint32), 1
    for axis in reversed(range(bits.ndim)):
        index += jax.lax.broadcasted_iota(jnp.uint32, bits.shape, axis) * jnp.uint32(stride)
        stride = stride * bits.shape[axis] % 2 ** 32
    return jnp.sum(bits * (index * 2 + 1), dtype=jnp.uint32)


@jax.jit
def _checksums(state) -> list:
    return [_leaf_checksum(x) for x in jax.tree.leaves(state)]


def _paths(state) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]


def state_checksums(state) -> dict:
    """{leaf path: checksum} of a train state, recorded in each checkpoint's meta."""
    return dict(zip(_paths(state), (int(c) for c in jax.device_get(_checksums(state)))))


def check_restored(state, meta: dict) -> None:
    """Raises ValueError when a restored state differs from what was saved (its checksums;
    checkpoints from before checksums skip that) or holds a non-finite number: a flipped byte
    on disk must make the checkpoint corrupt, not the run diverge."""
    expected = meta.get("state_checksums")
    if expected is not None:
        got = state_checksums(state)
        differ = [path for path in got if got[path] != expected.get(path)]
        if differ:
            raise ValueError(f"the restored state differs from the saved one (checksums of "
                             f"{len(differ)} arrays, e.g. {differ[0]})")
    finite = jax.device_get(_all_finite(state))
    bad = [path for path, ok in zip(_paths(state), finite) if not ok]
    if bad:
        raise ValueError(f"the restored state holds non-finite numbers ({len(bad)} arrays, e.g. "
                         f"{bad[0]})")


@jax.jit
def _all_finite(state) -> list:
    return [jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
            for x in jax.tree.leaves(state)]
