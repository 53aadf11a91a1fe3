"""data/integrity.py: training checks the prepared tokens it reads against meta.json's block
hashes (issue 31: 3 flipped bytes in train.zarr trained to rc 0 without a warning)."""
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts

from data import dataset, prepare, store
from data.integrity import BlockCheck, DamagedArray
from lm.train import cli


def _overwrite(prepared, start: int, count: int) -> None:
    """Writes other tokens into train.zarr: a valid array whose content meta.json does not
    describe (what a flipped bit that still decompresses does)."""
    array = store.open_tokens(store.join(prepared.path, "train.zarr"))
    old = array[start:start + count].read().result()
    array[start:start + count].write((old + 1) % 256).result()


def test_a_split_read_into_memory_is_checked_whole(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    _overwrite(prepared, 5000, 3)
    with pytest.raises(DamagedArray, match=r"train.zarr tokens \[0, \d+\) differs from the "
                                           r"hash its meta.json records: the prepared data is "
                                           r"damaged. `python -m data.verify "):
        dataset.open_prepared(tmp_path, "en_docs_sample", "byte")


def test_a_split_read_window_by_window_refuses_a_damaged_shard_before_any_token(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    intact = dataset.open_prepared(tmp_path, "en_docs_sample", "byte", read=False).train
    intact.windows(np.array([150_000]), 10)  # the file hashes recorded match the files
    shard = Path(prepared.path, "train.zarr", "c", "0")
    data = bytearray(shard.read_bytes())
    for i in (1000, 1001, 1002):  # 3 flipped bytes inside a compressed chunk, as in issue 31
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    train = dataset.open_prepared(tmp_path, "en_docs_sample", "byte", read=False).train
    assert not isinstance(train.tokens, np.ndarray)
    with pytest.raises(DamagedArray, match=r"train.zarr/c/0 \(tokens \[0, \d+\)\) differs "
                                           f".*delete {prepared.path} and prepare it again"):
        train.windows(np.array([150_000]), 10)  # far from the damage, in its shard


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 tokens, so that one small array has several."""
    monkeypatch.setattr(store, "SHARD", 64)


def _checked_split(tokens: np.ndarray, hashed: np.ndarray) -> dataset.Split:
    """A TensorStore split of `tokens` whose check holds the block hashes of `hashed`."""
    hashes = [store.block_sha256(hashed[i:i + store.SHARD])
              for i in range(0, len(hashed), store.SHARD)]
    check = BlockCheck("t.zarr", "prep", hashes, len(tokens))  # no file hashes: token hashes
    return dataset.Split("c", "train", ts.array(tokens), 1, len(tokens), len(tokens), check)


def test_each_block_is_checked_once_and_only_when_a_window_touches_it(small_blocks,
                                                                      monkeypatch):
    good = np.arange(256, dtype=np.uint16)
    damaged = good.copy()
    damaged[200] = 7  # block 3 of 4
    split = _checked_split(damaged, good)
    hashed = []
    real = store.block_sha256
    monkeypatch.setattr(store, "block_sha256", lambda t: hashed.append(len(t)) or real(t))
    rows = split.windows(np.array([10, 60, 130]), 8)  # 60..67 spans blocks 0 and 1
    assert (rows == np.stack([good[s:s + 8] for s in (10, 60, 130)])).all()
    assert len(hashed) == 3 and sorted(split.check._checked) == [0, 1, 2]
    split.windows(np.array([0, 100]), 8)
    assert len(hashed) == 3  # nothing read twice
    with pytest.raises(DamagedArray, match=r"t.zarr tokens \[192, 256\) differs"):
        split.windows(np.array([150, 190]), 8)  # 190..197 reaches block 3


def test_lm_train_on_damaged_prepared_data_is_one_error_line(data_root, tmp_path, capsys):
    root = tmp_path / "data"
    prepared = prepare.ensure_prepared(root, "en_docs_sample", workers=1)
    _overwrite(prepared, 5000, 3)
    status = cli.main(["--config=configs/quickstart.py", f"--workdir={tmp_path / 'run'}",
                       f"--config.data.root={root}", "--config.data.tokenizer=byte",
                       "--config.data.corpus=en_docs_sample",
                       "--config.data.eval_corpora=('en_docs_sample',)"])
    assert status == 2
    err = capsys.readouterr().err  # the preparation's progress bar, then the error
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert line.startswith("error: ") and "train.zarr tokens [0, " in line
    assert "data.verify" in line
