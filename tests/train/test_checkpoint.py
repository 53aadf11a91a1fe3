"""lm/train/checkpoint.py: a damaged checkpoint is corrupt (its checksums), not a divergence,
and a failed write is one message that says what to do."""
import os
import re
from pathlib import Path

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from lm import train
from lm.train.checkpoint import CheckpointWriteError, check_restored, state_checksums

# What a flipped byte in a checkpoint file meets varies from save to save: Orbax writes the
# arrays into its OCDBT data files concurrently, so the middle of the biggest file is sometimes a
# compressed chunk (it then fails to decode) and sometimes raw bytes (they fail the checksums).
DAMAGE = r"the restored state differs from the saved one|error while reading array"


def test_a_changed_or_non_finite_element_fails_the_restore_checks():
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.array(3)}
    meta = {"state_checksums": state_checksums(state)}
    check_restored(state, meta)
    changed = dict(state, w=state["w"].at[1, 2].set(5.0 + 2 ** -20))  # one bit of one element
    with pytest.raises(ValueError, match=r"the restored state differs from the saved one "
                                         r"\(checksums of 1 arrays, e.g. \['w'\]\)"):
        check_restored(changed, meta)
    with pytest.raises(ValueError, match=r"holds non-finite numbers \(1 arrays, e.g. \['w'\]"):
        check_restored(dict(state, w=state["w"].at[0, 0].set(jnp.nan)), {})


@pytest.mark.slow
def test_flipped_bytes_in_a_checkpoint_make_it_corrupt_not_a_divergence(short_config, tmp_path,
                                                                        capsys):
    workdir = str(tmp_path / "run")
    train.run(short_config, workdir)
    files = [p for p in Path(workdir, "checkpoints", "10", "state").rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    biggest.write_bytes(bytes(data))
    short_config.train.steps = 15
    assert train.run(short_config, workdir)["step"] == 15
    out = capsys.readouterr().out
    assert "checkpoint at step 10 is incomplete or corrupt" in out
    assert re.search(DAMAGE, out), out
    assert "resumed from the checkpoint at step 5" in out
    assert os.path.isdir(os.path.join(workdir, "checkpoints_corrupt", "10"))


@pytest.mark.slow
def test_a_failed_checkpoint_write_is_one_message_that_says_what_to_do(short_config, tmp_path,
                                                                       monkeypatch):
    def disk_full(*args, **kwargs):  # what Orbax raises when the disk fills during a write
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "params.x/0": No space left on '
                         'device\n(hundreds of lines follow)')

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match=r"writing a checkpoint to .*checkpoints "
                                                   r"failed \(ValueError: RESOURCE_EXHAUSTED.*No "
                                                   r"space left on device\)\. Free space"):
        train.run(short_config, str(tmp_path / "run"))
