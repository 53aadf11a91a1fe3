"""TensorStore I/O of prepared data: 1-D token arrays and small files, local, on GCS or in memory.

A path `gs://bucket/dir` goes through TensorStore's `gcs` kvstore driver, `memory://dir` through
its `memory` driver (one store per process, which stands in for a bucket in tests), any other
path through the `file` driver.

Token arrays are zarr v3, sharded: a shard file holds SHARD tokens, split into independently
compressed inner chunks of CHUNK tokens (blosc-zstd with byte shuffle: token ids are small, so
their high bytes compress to almost nothing). A training window of a few thousand tokens decodes
one or two 16 KB chunks, not a megabyte, and the number of files stays small (one per 8M
tokens). Arrays are written shard by shard, so no shard is ever read back and rewritten.
Arrays prepared before this layout (zarr v2, 2^20-token chunks) are still read.
"""
import hashlib
import json
import os
from typing import Iterator, Optional

import numpy as np
import tensorstore as ts

SHARD = 1 << 23  # tokens per shard file
CHUNK = 1 << 13  # tokens per compressed chunk inside a shard
ZARR3 = "zarr3"
# One context for every open: the memory kvstore lives in it, and its cache keeps shard indexes.
CONTEXT = ts.Context({"cache_pool": {"total_bytes_limit": 64 << 20}})
# Writers and whole-array checks share its memory kvstore but cache nothing: a cache would hold
# the shards they pass through, so their memory would grow with the array.
UNCACHED = ts.Context({"cache_pool": {"total_bytes_limit": 0}}, parent=CONTEXT)


def join(path: str, *names: str) -> str:
    return "/".join([str(path).rstrip("/"), *names])


def is_local(path) -> bool:
    return "://" not in str(path)


def kvstore_spec(path: str) -> dict:
    path = str(path)
    if path.startswith("gs://"):
        bucket, _, key = path[len("gs://"):].partition("/")
        return {"driver": "gcs", "bucket": bucket, "path": key}
    if path.startswith("memory://"):
        return {"driver": "memory", "path": path[len("memory://"):]}
    if not is_local(path):
        raise ValueError(f"{path}: prepared data goes to a local path, gs://bucket/dir or "
                         f"memory://dir (tests); {path.split('://')[0]}:// is not supported")
    return {"driver": "file", "path": os.path.abspath(path) + ("/" if path.endswith("/") else "")}


def _array_spec(path: str, length: int, dtype: np.dtype) -> dict:
    chunk_codecs = [{"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5,
                                                        "shuffle": "shuffle",
                                                        "typesize": dtype.itemsize}}]
    index_codecs = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
    return {"driver": ZARR3, "kvstore": kvstore_spec(path),
            "metadata": {"shape": [length], "data_type": dtype.name,
                         "chunk_grid": {"name": "regular",
                                        "configuration": {"chunk_shape": [SHARD]}},
                         "codecs": [{"name": "sharding_indexed", "configuration": {
                             "chunk_shape": [CHUNK], "codecs": chunk_codecs,
                             "index_codecs": index_codecs}}]}}


class TokenWriter:
    """Writes a new 1-D token array of known `length` at `path` from pieces appended in order,
    one whole shard at a time (memory: one shard), and hashes each shard's tokens
    (`block_hashes`) and, once closed, each shard file's bytes (`shard_hashes`), for meta.json.
    An array left there by a killed writer is replaced."""

    def __init__(self, path: str, length: int, dtype):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.length = length
        self._array = ts.open(_array_spec(path, length, self.dtype), create=True,
                              delete_existing=True, context=UNCACHED).result()
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._written = 0
        self.block_hashes: list[str] = []
        self.shard_hashes: list[str] = []

    def append(self, tokens: np.ndarray) -> None:
        self._pending.append(tokens.astype(self.dtype, copy=False))
        self._pending_size += len(tokens)
        if self._pending_size >= SHARD:
            self._flush(whole_shards_only=True)

    def close(self) -> None:
        self._flush(whole_shards_only=False)
        if self._written != self.length:
            raise RuntimeError(f"token array got {self._written} tokens, expected {self.length}")
        self.shard_hashes = [shard_sha256(self.path, i) for i in range(-(-self.length // SHARD))]

    def _flush(self, whole_shards_only: bool) -> None:
        tokens = np.concatenate(self._pending) if self._pending else np.zeros(0, self.dtype)
        size = len(tokens) // SHARD * SHARD if whole_shards_only else len(tokens)
        if self._written + size > self.length:
            raise RuntimeError(f"token array got more than the {self.length} tokens expected")
        if size:
            self._array[self._written:self._written + size].write(tokens[:size]).result()
            self.block_hashes += [block_sha256(tokens[i:min(i + SHARD, size)])
                                  for i in range(0, size, SHARD)]
        self._written += size
        self._pending = [tokens[size:]]
        self._pending_size = len(tokens) - size


def open_tokens(path: str, driver: str = ZARR3, cached: bool = True) -> ts.TensorStore:
    """Opens a token array for reading; a missing chunk is an error, never read as zeros.
    `cached=False` for one pass over the whole array."""
    return ts.open({"driver": driver, "kvstore": kvstore_spec(path),
                    "fill_missing_data_reads": False}, open=True,
                   context=CONTEXT if cached else UNCACHED).result()


def block_sha256(tokens: np.ndarray) -> str:
    """The content hash of one SHARD-token block (little-endian bytes), as meta.json records."""
    return hashlib.sha256(tokens.astype(tokens.dtype.newbyteorder("<"), copy=False)
                          .tobytes()).hexdigest()


def shard_sha256(path: str, block: int) -> str:
    """The sha256 of the stored bytes of shard `block` of the zarr3 token array at `path` (its
    file c/<block>; a shard of fill values only is not stored: the hash of no bytes). Checking
    these, as training does, costs a read of the compressed file, not a decode of its tokens."""
    return hashlib.sha256(read_bytes(join(path, "c", str(block))) or b"").hexdigest()


def _kvstore(directory: str) -> ts.KvStore:
    return ts.KvStore.open(kvstore_spec(str(directory).rstrip("/") + "/"),
                           context=CONTEXT).result()


def read_bytes(path: str) -> Optional[bytes]:
    """The bytes stored at `path`, or None if there is none."""
    parent, _, name = str(path).rstrip("/").rpartition("/")
    result = _kvstore(parent).read(name).result()
    return bytes(result.value) if result.state == "value" else None


def write_bytes(path: str, data: bytes) -> None:
    """Stores `data` at `path` whole or not at all (the kvstore drivers write atomically)."""
    parent, _, name = str(path).rstrip("/").rpartition("/")
    if is_local(path):
        os.makedirs(parent, exist_ok=True)
    _kvstore(parent).write(name, data).result()


def read_json(path: str) -> Optional[dict]:
    """The JSON object stored at `path`, or None if there is none."""
    data = read_bytes(path)
    return None if data is None else json.loads(data)


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def list_keys(directory: str) -> Iterator[str]:
    """The keys (relative paths) of every file under `directory`."""
    for key in _kvstore(directory).list().result():
        yield key.decode()


def delete_tree(directory: str) -> None:
    """Deletes every file under `directory`."""
    _kvstore(directory).delete_range(ts.KvStore.KeyRange()).result()
