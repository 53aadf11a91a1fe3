"""data/verify.py (`python -m data.verify`): overwritten tokens are found."""
import numpy as np

from data import prepare, store, verify


def test_overwritten_tokens_are_found_by_data_verify(tmp_path, capsys):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    array = store.open_tokens(store.join(prepared.path, "train.zarr"))
    array[100:110].write(np.zeros(10, np.uint16)).result()
    assert verify.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "train.zarr tokens [0, " in out and "content differs" in out
    assert "val.zarr" not in out and "delete" in out
