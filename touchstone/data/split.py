"""The split: train/val/test by a hash of the content and `seed`, so a document's split depends on its
text alone and re-running or adding sources never moves it. The one exception: when a small corpus
would leave val or test empty, the kept train documents closest to the boundary are lent to it."""

from __future__ import annotations

import hashlib
from collections import Counter

from touchstone.data.config import PrepareConfig

SPLITS = ("train", "val", "test")


def split_key(doc_id: str, seed: int) -> float:
    """A number in [0, 1) from the content id and seed: the document's place in the split."""
    h = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_of(key: float, cfg: PrepareConfig) -> str:
    if key < cfg.val_fraction:
        return "val"
    if key < cfg.val_fraction + cfg.test_fraction:
        return "test"
    return "train"


def empty_splits(present, cfg: PrepareConfig) -> list[str]:
    """Of val and test, those that should have documents (a fraction above 0) and have none in `present`."""
    fractions = {"val": cfg.val_fraction, "test": cfg.test_fraction}
    return [name for name in ("val", "test") if fractions[name] > 0 and name not in present]


def lent_keys(keys: list[float], cfg: PrepareConfig) -> dict[float, str]:
    """For a corpus too small to fill val or test by hash alone: the train keys lent to them (the
    lowest ones above the boundary, so the choice still depends only on content)."""
    counts = Counter(split_of(k, cfg) for k in keys)
    train = sorted(k for k in keys if split_of(k, cfg) == "train")
    lent = {}
    for name in empty_splits(+counts, cfg):
        if len(train) > 1:
            lent[train.pop(0)] = name
    return lent
