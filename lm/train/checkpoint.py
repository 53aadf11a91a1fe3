"""Orbax checkpoints of the train state: save every k steps, keep the last n, async writes, and a
resume that falls back past a corrupt latest checkpoint without deleting any good one.

Layout: WORKDIR/checkpoints/<step>/{state,meta}; a checkpoint that fails to restore is moved,
not deleted, to WORKDIR/checkpoints_corrupt/<step> so that the next save of that step can land.
Arrays are saved with their shardings and restored onto the target shardings of the abstract
state given (any mesh: save with fsdp=8, restore with data=2,fsdp=4 or on one device); in a
multi-process run every process calls save and restore, and Orbax writes each shard once.
The workdir may be a gs:// URL: Orbax writes there itself, and the move aside goes through
lm/train/workdir.py's path layer.
"""
import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from lm.train import workdir as run_files


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
        """Starts saving `state` (a pytree of arrays) and JSON `meta` at `step`; returns once
        the arrays are copied off the training buffers, writing on in the background."""
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)))

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

    def restore(self, step: int, abstract_state) -> tuple:
        """(state, meta) of the checkpoint at `step`, onto `abstract_state`'s shardings."""
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
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
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

