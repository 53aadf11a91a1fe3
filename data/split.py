"""Deterministic train/validation split by document, from each document's content hash.

A document goes to validation when sha256(text) mod 10^6 < val_fraction * 10^6. The split
depends only on the text, so it is stable under reordering and adding documents, and identical
documents always land on the same side. Each split gets at least one document: if the hash rule
leaves one empty, the document whose hash bucket is nearest the threshold changes sides (the
smallest `order_key` of all if no document is in validation, the largest if all are).
"""
import hashlib
from typing import Iterable

RESOLUTION = 10 ** 6


def document_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def order_key(key: int) -> tuple[int, int]:
    """Where a document stands relative to the threshold (ties broken by the whole hash)."""
    return key % RESOLUTION, key


def threshold(val_fraction: float) -> int:
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
    return round(val_fraction * RESOLUTION)


def is_validation(key: int, val_threshold: int) -> bool:
    return key % RESOLUTION < val_threshold


def validation_mask(texts: Iterable[str], val_fraction: float) -> list[bool]:
    """One flag per document, True for validation (the rule above, on documents in memory)."""
    val_threshold = threshold(val_fraction)
    keys = [document_key(t) for t in texts]
    if len(keys) < 2:
        raise ValueError(f"a train/validation split needs at least 2 documents, got {len(keys)}")
    order = sorted(range(len(keys)), key=lambda i: order_key(keys[i]))
    mask = [is_validation(k, val_threshold) for k in keys]
    if not any(mask):
        mask[order[0]] = True
    if all(mask):
        mask[order[-1]] = False
    return mask
