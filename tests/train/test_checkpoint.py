"""lm/train/checkpoint.py: a damaged checkpoint is corrupt (its checksums), not a divergence,
and a failed write is one message that says what to do."""
import os
from pathlib import Path

import orbax.checkpoint as ocp
import pytest

from lm import train
from lm.train.checkpoint import CheckpointWriteError


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
    assert "the restored state differs from the saved one" in out  # its checksums
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
