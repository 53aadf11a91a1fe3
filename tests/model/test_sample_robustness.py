"""python -m lm.sample on a run that is being written or damaged: a checkpoint mid-write or
damaged is skipped with a one-line warning for the one before (lm/train/checkpoint.py's
restore_readable), a damaged --step is one error line naming the others, and a damaged
config.json or data.json is one error line naming the file."""
import os
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from core.run_format import DamagedFile
from lm import sample, train
from lm.train.checkpoint import Checkpointer
from tests.train.test_checkpoint import DAMAGE


def write_mid_save(checkpoints: Path, done: int, step: int) -> None:
    """Step `step` as a reader may find it while Orbax writes it: the step directory holds the
    state but not yet the meta (the KeyError of issue 31), and a temporary directory beside."""
    shutil.copytree(checkpoints / str(done), checkpoints / f"{step + 1}.orbax-checkpoint-tmp-1")
    shutil.copytree(checkpoints / str(done), checkpoints / str(step))
    shutil.rmtree(checkpoints / str(step) / "meta")


def flip_bytes(checkpoint: Path) -> None:
    """Damages the biggest file of a checkpoint's state, as a bad disk would."""
    files = [p for p in (checkpoint / "state").rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    biggest.write_bytes(bytes(data))


def test_a_reader_skips_a_checkpoint_being_written_and_moves_nothing(tmp_path, capsys):
    state = {"w": jnp.arange(8.0)}
    writer = Checkpointer(str(tmp_path), 5)
    for step in (1, 2):
        writer.save(step, state, {"step": step})
    writer.close()
    write_mid_save(tmp_path / "checkpoints", done=2, step=3)
    reader = Checkpointer(str(tmp_path), 1, read_only=True)
    step, restored, meta = reader.restore_readable(jax.eval_shape(lambda: state))
    reader.close()
    assert step == 2 and meta["step"] == 2 and (restored["w"] == state["w"]).all()
    warning = capsys.readouterr().err
    assert warning.startswith("warning: the checkpoint at step 3 in ") and warning.count("\n") == 1
    assert "falling back to the previous one" in warning
    assert sorted(os.listdir(tmp_path / "checkpoints"))[:3] == ["1", "2", "3"]  # none moved


@pytest.mark.slow
def test_lm_sample_falls_back_past_a_checkpoint_being_written_or_damaged(short_config, tmp_path,
                                                                         capsys):
    workdir = tmp_path / "run"
    train.run(short_config, str(workdir))  # checkpoints at steps 5 and 10
    write_mid_save(workdir / "checkpoints", done=10, step=15)
    capsys.readouterr()  # training's own output
    args = [f"--workdir={workdir}", "--prompt=The", "--tokens=3", "--json"]
    assert sample.main(args) == 0
    out, err = capsys.readouterr()
    assert '"step": 10' in out and "checkpoint at step 15" in err and "KeyError" in err

    flip_bytes(workdir / "checkpoints" / "10")
    assert sample.main(args) == 0
    out, err = capsys.readouterr()
    assert '"step": 5' in out and "step 10" in err and re.search(DAMAGE, err), err
    assert (workdir / "checkpoints" / "10").is_dir()  # a reader moves nothing aside

    assert sample.main([*args, "--step=10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --step=10: the checkpoint at step 10 ") and err.count("\n") == 1
    assert "give another of its steps [5, 15]" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config.json", "data.json"])
def test_lm_sample_on_a_damaged_run_file_is_one_error_line(short_config, tmp_path, capsys,
                                                           name):
    workdir = tmp_path / "run"
    short_config.train.update(dict(steps=5))
    train.run(short_config, str(workdir))
    capsys.readouterr()  # training's own output
    path = workdir / name
    path.write_text(path.read_text()[:40])  # torn mid-write
    assert sample.main([f"--workdir={workdir}", "--prompt=The", "--tokens=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is damaged") and err.count("\n") == 1, err
    with pytest.raises(DamagedFile, match=name):
        sample.load(str(workdir))


@pytest.mark.slow
def test_a_branch_from_a_run_writing_a_checkpoint_starts_from_the_one_before(short_config,
                                                                          tmp_path, capsys):
    source = tmp_path / "source"
    train.run(short_config, str(source))  # checkpoints at steps 5 and 10
    write_mid_save(source / "checkpoints", done=10, step=15)
    capsys.readouterr()
    short_config.train.update(dict(branch_from=str(source), branch_step=-1, steps=12))
    train.run(short_config, str(tmp_path / "branch"))
    out, err = capsys.readouterr()
    assert f"branched from {source} at step 10" in out
    assert "warning: the checkpoint at step 15 " in err
