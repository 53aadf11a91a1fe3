"""Opens prepared data: `open_prepared(root, corpus, tokenizer_id)` -> `PreparedCorpus`.

`data.prepare` writes `ROOT/prepared/<tokenizer_id>/<corpus>/{train.zarr, val.zarr, meta.json}`;
meta.json is written last and marks a complete directory. A split is the concatenation of its
documents' tokens, each document followed by EOS. Its `num_bytes` counts the documents' UTF-8
bytes plus one byte per document for its EOS, so `bytes_per_token` turns a loss in nats per
token into bits per byte (bpb = loss / ln 2 / bytes_per_token) with EOS counted as one byte.
"""
import dataclasses
import logging
import os
import re
import shlex
from typing import Any

import numpy as np

from data import store
from data.integrity import BlockCheck
from data.tokenizer import Tokenizer, load_tokenizer

IN_MEMORY_LIMIT = 1 << 30  # splits smaller than this (in bytes) are read into memory at once
SPLITS = ("train", "val")


def default_root() -> str:
    """$OPTISCALE_DATA_DIR if set, else ~/.cache/optiscale."""
    return os.environ.get("OPTISCALE_DATA_DIR") or os.path.expanduser("~/.cache/optiscale")


def local_root(root) -> str:
    """Where registered corpora are fetched for `root`: `root` itself when it is a local path;
    for a bucket (gs://), a local cache: $OPTISCALE_DATA_DIR when that is a local path, else
    ~/.cache/optiscale. Only the tokenizers and the prepared arrays go to the bucket."""
    if store.is_local(root):
        return str(root)
    default = default_root()
    return default if store.is_local(default) else os.path.expanduser("~/.cache/optiscale")


def prepared_path(root, tokenizer_id: str, corpus: str) -> str:
    return store.join(root, "prepared", tokenizer_id, corpus)


@dataclasses.dataclass(frozen=True)
class Split:
    corpus: str
    name: str  # "train" | "val"
    tokens: Any  # np.ndarray, or a tensorstore.TensorStore for splits above IN_MEMORY_LIMIT
    num_docs: int
    num_tokens: int
    num_bytes: int
    check: BlockCheck | None = None  # meta.json's block hashes (None: prepared before them)

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / self.num_tokens

    def windows(self, starts, length: int) -> np.ndarray:
        """int32 array [len(starts), length]: row i is tokens[starts[i] : starts[i] + length].
        A split read from TensorStore has the shards these windows touch checked against their
        hashes first (`BlockCheck`; one held in memory was checked whole when it was read)."""
        starts = np.asarray(starts, dtype=np.int64)
        if isinstance(self.tokens, np.ndarray):
            return self.tokens[starts[:, None] + np.arange(length)].astype(np.int32)
        if self.check is not None:
            self.check.windows(self.tokens, starts, length)
        reads = [self.tokens[s:s + length].read() for s in starts.tolist()]
        return np.stack([r.result() for r in reads]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class PreparedCorpus:
    corpus: str
    tokenizer: str  # tokenizer id: "byte" or "bpe<V>-<hash>"
    path: str
    vocab_size: int
    eos_id: int
    train: Split
    val: Split
    meta: dict


def prepare_command(root, source: str, tokenizer_id: str) -> str:
    """The command that prepares `source` (a spec --corpus takes) for a tokenizer like
    `tokenizer_id`."""
    bpe = re.fullmatch(r"bpe(\d+)-[0-9a-f]+", tokenizer_id)
    tok = f"bpe --vocab_size {bpe[1]}" if bpe else tokenizer_id
    return (f"python -m data.prepare --corpus {shlex.quote(source)} --tokenizer {tok} "
            f"--data_root {shlex.quote(str(root))}")


def read_meta(root, corpus: str, tokenizer_id: str, source: str | None = None) -> dict | None:
    """The meta.json of preparation `corpus` (its directory's name), None if there is none (not
    prepared, or not finished); a ValueError with the path and the fix if it is damaged.
    `source`: the spec it was prepared from, for the fix's command (a pattern source's
    directory name, e.g. small-acc04878f31f, is no spec --corpus takes); default `corpus`."""
    path = prepared_path(root, tokenizer_id, corpus)
    try:
        meta = store.read_json(store.join(path, "meta.json"))
        splits = meta.get("splits") if isinstance(meta, dict) else None
        if meta is not None and not (isinstance(splits, dict) and set(SPLITS) <= splits.keys()):
            raise ValueError("it has no counts for the train and val splits")
    except ValueError as err:  # a JSONDecodeError or UnicodeDecodeError too
        command = prepare_command(root, source or corpus, tokenizer_id)
        raise ValueError(f"{path}/meta.json is damaged ({err}); delete {path} and prepare it "
                         f"again: `{command}`") from err
    return meta


def tokenizer_of(path: str) -> Tokenizer:
    """The tokenizer of the preparation at `path` (ROOT/prepared/<tokenizer_id>/<corpus>, as a
    run's data.json records it); FileNotFoundError if it is gone."""
    meta = store.read_json(store.join(path, "meta.json"))
    if meta is None:
        raise FileNotFoundError(f"{path}/meta.json is missing: the run's prepared data was "
                                "deleted or moved; prepare its sources again")
    root = str(path).rstrip("/").rsplit("/", 3)[0]
    return load_tokenizer(root, meta["tokenizer"])


def _block_check(array_path: str, path: str, info: dict, driver: str) -> BlockCheck | None:
    """The split's BlockCheck; None, with a warning, for one prepared before block hashes."""
    if info.get("block_sha256") is None:
        logging.getLogger(__name__).warning(
            "%s was prepared before content hashes were recorded: training cannot check it; "
            "delete %s and prepare it again to get them", array_path, path)
        return None
    return BlockCheck(array_path, path, info["block_sha256"], info["num_tokens"],
                      info.get("shard_sha256") if driver == store.ZARR3 else None)


def open_prepared(root, corpus: str, tokenizer_id: str, read: bool = True,
                  source: str | None = None) -> PreparedCorpus:
    """The prepared train and validation splits of `corpus`; FileNotFoundError if not prepared.

    With `read`, splits under IN_MEMORY_LIMIT are read into memory and checked whole against
    meta.json's block hashes now (data.integrity.DamagedArray if they differ); the others are
    checked block by block as training reads them. `source` as in `read_meta`."""
    path = prepared_path(root, tokenizer_id, corpus)
    meta = read_meta(root, corpus, tokenizer_id, source)
    if meta is None:
        raise FileNotFoundError(
            f"no prepared data for corpus {corpus!r} with tokenizer {tokenizer_id!r} at {path} "
            f"(meta.json, written when a preparation completes, is missing). Prepare it with "
            f"`{prepare_command(root, source or corpus, tokenizer_id)}`"
            + (" and the --tokenizer_corpora that tokenizer was trained on"
               if tokenizer_id.startswith("bpe") else ""))
    splits = {}
    for name in SPLITS:
        info = meta["splits"][name]
        array_path = store.join(path, f"{name}.zarr")
        try:  # arrays prepared before data.store's zarr3 layout are zarr v2
            driver = meta.get("array_driver", "zarr")
            tokens = store.open_tokens(array_path, driver)
            if tokens.shape != (info["num_tokens"],):
                raise ValueError(f"shape {tokens.shape}, but meta.json says "
                                 f"{info['num_tokens']} tokens")
            check = _block_check(array_path, path, info, driver)
            if read and info["num_tokens"] * tokens.dtype.numpy_dtype.itemsize < IN_MEMORY_LIMIT:
                tokens = tokens.read().result()
                if check is not None:
                    check.whole(tokens)
        except ValueError as err:  # TensorStore's errors for damaged metadata or chunks
            raise ValueError(f"prepared array {array_path} is damaged ({err}); delete {path} "
                             "and prepare it again") from err
        splits[name] = Split(corpus, name, tokens, info["num_docs"], info["num_tokens"],
                             info["num_bytes"], check)
    return PreparedCorpus(corpus, tokenizer_id, path, meta["vocab_size"], meta["eos_id"],
                          splits["train"], splits["val"], meta)
