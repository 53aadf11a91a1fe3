"""TensorStore I/O of prepared data: 1-D zarr token arrays and JSON files, local or on GCS.

A path `gs://bucket/dir` goes through TensorStore's `gcs` kvstore driver, any other path through
the `file` driver. Arrays are zarr (v2) in chunks of 2^20 tokens, compressed with blosc-zstd and
byte shuffle (token ids are small, so their high bytes compress to almost nothing).
"""
import json
import os
from typing import Optional

import numpy as np
import tensorstore as ts

CHUNK = 1 << 20  # tokens per zarr chunk
COMPRESSOR = {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1}


def join(path: str, *names: str) -> str:
    return "/".join([str(path).rstrip("/"), *names])


def kvstore_spec(path: str) -> dict:
    path = str(path)
    if path.startswith("gs://"):
        bucket, _, key = path[len("gs://"):].partition("/")
        return {"driver": "gcs", "bucket": bucket, "path": key}
    return {"driver": "file", "path": os.path.abspath(path) + ("/" if path.endswith("/") else "")}


def write_tokens(path: str, tokens: np.ndarray) -> None:
    """Writes the 1-D array `tokens` as a new zarr array at `path` (which must not exist)."""
    store = ts.open({"driver": "zarr", "kvstore": kvstore_spec(path),
                     "metadata": {"shape": [len(tokens)], "chunks": [CHUNK],
                                  "dtype": tokens.dtype.str, "compressor": COMPRESSOR}},
                    create=True).result()
    slab = 16 * CHUNK
    for start in range(0, len(tokens), slab):
        stop = min(start + slab, len(tokens))
        store[start:stop].write(tokens[start:stop]).result()


def open_tokens(path: str) -> ts.TensorStore:
    return ts.open({"driver": "zarr", "kvstore": kvstore_spec(path)}, open=True).result()


def read_json(path: str) -> Optional[dict]:
    """The JSON object stored at `path`, or None if there is none."""
    parent, _, name = str(path).rstrip("/").rpartition("/")
    result = ts.KvStore.open(kvstore_spec(parent + "/")).result().read(name).result()
    return json.loads(result.value) if result.state == "value" else None
