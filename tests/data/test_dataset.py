"""data/dataset.py: damaged prepared data (a missing chunk, a truncated meta.json) is an error
that says how to rebuild it, never zeros."""
from pathlib import Path

import pytest

from data import dataset, prepare


def test_a_missing_chunk_of_prepared_data_is_an_error_not_zeros(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    (shard,) = [p for p in Path(prepared.path, "train.zarr").rglob("*")
                if p.is_file() and p.name != "zarr.json"]
    shard.unlink()
    with pytest.raises(ValueError, match=r"train.zarr is damaged .*prepare it again"):
        dataset.open_prepared(tmp_path, "en_docs_sample", "byte")


def test_a_damaged_meta_json_is_refused_with_the_command_that_rebuilds_it(tmp_path):
    prepared = prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)
    meta = Path(prepared.path, "meta.json")
    meta.write_text(meta.read_text()[:40])  # truncated
    for attempt in (lambda: dataset.open_prepared(tmp_path, "en_docs_sample", "byte"),
                    lambda: prepare.ensure_prepared(tmp_path, "en_docs_sample", workers=1)):
        with pytest.raises(ValueError, match=r"meta.json is damaged .*delete .* and prepare it "
                                             r"again: `python -m data.prepare --corpus "
                                             r"en_docs_sample"):
            attempt()
