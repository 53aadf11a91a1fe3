"""Prepared token arrays checked against the hashes their meta.json records, as training reads.

`data.prepare` records, per split, the sha256 of every `data.store.SHARD`-token block's tokens
(`block_sha256`) and of every shard file's stored bytes (`shard_sha256`). Training reads a split
through its `BlockCheck`: a split held in memory is checked whole against the token hashes when
it is read (one hash pass at start-up); a split read window by window from TensorStore has each
shard checked the first time a window touches it, once per process, against its file hash (a
read of the compressed file: about 10x cheaper than decoding and hashing its tokens; a
preparation from before file hashes uses the token hashes). No token of a damaged shard reaches
a batch. `python -m data.verify` checks every block of a preparation at once.
"""
import dataclasses
import threading
from typing import Iterable

import numpy as np

from data import store


class DamagedArray(OSError):
    """Prepared tokens that differ from the hashes meta.json records (a flipped bit on disk, a
    truncated copy): an OSError, like any other unreadable input file."""


def block_bounds(block: int, num_tokens: int) -> tuple[int, int]:
    """[start, stop) of block `block` of an array of `num_tokens` tokens."""
    return block * store.SHARD, min((block + 1) * store.SHARD, num_tokens)


@dataclasses.dataclass
class BlockCheck:
    """Checks the blocks of one prepared split against its meta.json hashes, each block once.

    `preparation`: the preparation's directory, named in the error with the fix;
    `shard_hashes`: the stored files' hashes (None: prepared before they were recorded, or an
    array not in data.store's zarr3 layout)."""
    array_path: str
    preparation: str
    block_hashes: list[str]
    num_tokens: int
    shard_hashes: list[str] | None = None
    _checked: set = dataclasses.field(default_factory=set)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def windows(self, tokens, starts: np.ndarray, length: int) -> None:
        """Checks the blocks that the windows tokens[s : s + length], s in `starts`, touch
        (`tokens`: the split's TensorStore)."""
        touched = set((starts // store.SHARD).tolist())
        touched |= set(((starts + length - 1) // store.SHARD).tolist())
        if not touched <= self._checked:
            self._check(sorted(touched - self._checked), tokens)

    def whole(self, tokens: np.ndarray) -> None:
        """Checks every block of a split read into memory against its token hashes."""
        self._check(range(len(self.block_hashes)), tokens, in_memory=True)

    def _check(self, blocks: Iterable[int], tokens, in_memory: bool = False) -> None:
        with self._lock:  # one reader checks a block; the prefetch thread and eval may overlap
            for block in blocks:
                if block not in self._checked:
                    self._check_block(block, tokens, in_memory)
                    self._checked.add(block)

    def _check_block(self, block: int, tokens, in_memory: bool) -> None:
        start, stop = block_bounds(block, self.num_tokens)
        if self.shard_hashes is not None and not in_memory:
            where = f"{self.array_path}/c/{block} (tokens [{start}, {stop}))"
            intact = store.shard_sha256(self.array_path, block) == self.shard_hashes[block]
        else:
            where = f"{self.array_path} tokens [{start}, {stop})"
            data = tokens[start:stop]
            data = data if in_memory else data.read().result()
            intact = store.block_sha256(data) == self.block_hashes[block]
        if not intact:
            raise DamagedArray(
                f"{where} differs from the hash its meta.json records: the prepared data is "
                f"damaged. `python -m data.verify {self.preparation}` lists every damaged "
                f"block; delete {self.preparation} and prepare it again (a run prepares it on "
                "its next start)")
