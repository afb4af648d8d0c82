"""Deduplication: exact (by content hash), then near duplicates (MinHash LSH on word 5-gram shingles).
The first occurrence is kept. Near-duplicate detection is probabilistic: LSH may miss a pair just above
`near_dup_threshold` or drop one just below it."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator

from touchstone.data.clean import WORD
from touchstone.data.config import PrepareConfig
from touchstone.data.sources import Doc


def exact_dedup(docs: Iterable[Doc], drops: Counter) -> Iterator[Doc]:
    seen: set[bytes] = set()
    for text, source in docs:
        digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
        if digest in seen:
            drops["exact_duplicate"] += 1
        else:
            seen.add(digest)
            yield text, source


def shingles(text: str, n: int = 5) -> set[bytes]:
    words = WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def near_dedup(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    """Drop a document whose MinHash collides in LSH with an earlier kept one."""
    if cfg.near_dup_threshold >= 1.0:
        yield from docs
        return
    import xxhash
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm)
    # xxhash: faster than datasketch's default sha1, and stable across runs.
    template = MinHash(num_perm=cfg.num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)  # permutations made once
    for i, (text, source) in enumerate(docs):
        m = MinHash(
            num_perm=cfg.num_perm,
            seed=1,
            hashfunc=xxhash.xxh32_intdigest,
            permutations=template.permutations,
            scheme=template.scheme,
        )
        m.update_batch(list(shingles(text)))
        if lsh.query(m):
            drops["near_duplicate"] += 1
            continue
        lsh.insert(i, m, check_duplication=False)
        yield text, source
