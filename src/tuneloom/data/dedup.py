"""Duplicates: exact (on normalised text) and near (MinHash LSH over word shingles, via datasketch).

Rows are compared in reading order and the first one of each cluster is kept, before the split,
so no exact or near duplicate of any kept row remains anywhere: not within a split, and no
near-duplicate of a test example in train.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH

from tuneloom.config import DedupConfig

SEED = 1


@lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    """Permutations are drawn once per process: a new MinHash would draw them for every row."""
    return MinHash(num_perm=num_perm, seed=SEED, hashfunc=xxhash.xxh32_intdigest)


def shingles(key: str, size: int) -> set[bytes]:
    """Word n-grams of a normalised (case-folded, single-spaced) text; the whole text when shorter."""
    words = key.split()
    if len(words) <= size:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def signature(key: str, cfg: DedupConfig) -> np.ndarray:
    """MinHash values of one text (xxhash instead of the default SHA-1: same quality, several times faster)."""
    template = _template(cfg.num_perm)
    m = MinHash(
        num_perm=cfg.num_perm,
        seed=SEED,
        hashfunc=xxhash.xxh32_intdigest,
        permutations=template.permutations,
        scheme=template.scheme,
    )
    m.update_batch(list(shingles(key, cfg.shingle)))
    return m.hashvalues


class NearDuplicates:
    """Streaming near-duplicate check: a row is a duplicate of the first kept row it resembles."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.cfg = cfg
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self.scheme = _template(cfg.num_perm).scheme
        self.kept: dict[str, LeanMinHash] = {}

    def check(self, row_id: str, values: np.ndarray) -> tuple[str, float] | None:
        """(id of the kept row it duplicates, estimated Jaccard), or None after keeping it."""
        sig = LeanMinHash(seed=SEED, hashvalues=values, scheme=self.scheme)
        best: tuple[str, float] | None = None
        for other in self.lsh.query(sig):
            score = sig.jaccard(self.kept[other])  # LSH candidates are verified, not trusted
            if score >= self.cfg.threshold and (best is None or score > best[1]):
                best = (other, score)
        if best is None:
            self.lsh.insert(row_id, sig)
            self.kept[row_id] = sig
        return best


def clusters(duplicates: list[dict[str, Any]], limit: int = 20) -> list[dict[str, Any]]:
    """The largest near-duplicate clusters: kept row and its removed duplicates."""
    by_kept: dict[str, list[dict[str, Any]]] = {}
    for d in duplicates:
        by_kept.setdefault(d["duplicate_of"], []).append(d)
    ranked = sorted(by_kept.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    return [{"kept": k, "removed": v} for k, v in ranked]
