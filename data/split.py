"""Deterministic train/validation split by document, from each document's content hash.

A document goes to validation when sha256(text) mod 10^6 < val_fraction * 10^6. The split
depends only on the text, so it is stable under reordering and adding documents, and identical
documents always land on the same side.
"""
import hashlib
from typing import Iterable

RESOLUTION = 10 ** 6


def validation_mask(texts: Iterable[str], val_fraction: float) -> list[bool]:
    """One flag per document, True for validation.

    Each split gets at least one document: if the hash rule leaves one empty, the document whose
    hash bucket is nearest the threshold changes sides.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
    keys = [int.from_bytes(hashlib.sha256(t.encode()).digest(), "big") for t in texts]
    if len(keys) < 2:
        raise ValueError(f"a train/validation split needs at least 2 documents, got {len(keys)}")
    order = sorted(range(len(keys)), key=lambda i: (keys[i] % RESOLUTION, keys[i]))
    threshold = round(val_fraction * RESOLUTION)
    mask = [k % RESOLUTION < threshold for k in keys]
    if not any(mask):
        mask[order[0]] = True
    if all(mask):
        mask[order[-1]] = False
    return mask
