"""Hybrid retrieval: dense and keyword candidates from the store, fused by weighted reciprocal rank fusion,
optionally reordered by a local cross-encoder. Access filtering happens inside the store, before the top-k cut.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tuneloom.config import RetrievalConfig
from tuneloom.errors import ModelNotAvailable
from tuneloom.knowledge.records import Chunk, Filter, Hit, VectorStore


def rrf(dense: list[tuple[Chunk, float]], keyword: list[tuple[Chunk, float]], settings: RetrievalConfig) -> list[Hit]:
    """Weighted reciprocal rank fusion: score = w_dense / (rrf_k + rank) + w_keyword / (rrf_k + rank), ranks from 1."""
    hits: dict[str, Hit] = {}
    for rank, (chunk, _) in enumerate(dense, 1):
        hits[chunk.chunk_id] = Hit(chunk=chunk, score=settings.dense_weight / (settings.rrf_k + rank), dense_rank=rank)
    for rank, (chunk, _) in enumerate(keyword, 1):
        add = settings.keyword_weight / (settings.rrf_k + rank)
        hit = hits.get(chunk.chunk_id)
        if hit is None:
            hits[chunk.chunk_id] = Hit(chunk=chunk, score=add, keyword_rank=rank)
        else:
            hit.score += add
            hit.keyword_rank = rank
    return sorted(hits.values(), key=lambda h: (-h.score, h.chunk.chunk_id))


class Reranker:
    """A local cross-encoder (sentence-transformers) scoring (query, passage) pairs."""

    def __init__(self, folder: str) -> None:
        from sentence_transformers import CrossEncoder

        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(f"retrieval.reranker: {path} is not a local model folder (no config.json)")
        self.model = CrossEncoder(str(path), local_files_only=True, trust_remote_code=False)

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self.model.predict([(query, h.chunk.text) for h in hits], show_progress_bar=False)
        for hit, score in zip(hits, np.asarray(scores, dtype=np.float64).reshape(len(hits), -1)[:, -1], strict=True):
            hit.rerank_score = float(score)
        return sorted(hits, key=lambda h: -(h.rerank_score or 0.0))


def hybrid_search(
    store: VectorStore,
    query: str,
    embed: Callable[[str], np.ndarray],
    settings: RetrievalConfig,
    k: int,
    flt: Filter,
    reranker: Any = None,
) -> list[Hit]:
    """The top `k` chunks for `query` that `flt` admits (a zero weight skips that search)."""
    depth = max(settings.candidates, k)
    dense = store.dense_search(embed(query), depth, flt) if settings.dense_weight > 0 else []
    keyword = store.keyword_search(query, depth, flt) if settings.keyword_weight > 0 else []
    hits = rrf(dense, keyword, settings)
    if reranker is not None:
        hits = reranker.rerank(query, hits[: max(k, min(depth, 4 * k))])
    return [h for h in hits if flt.admits(h.chunk)][:k]  # the store filtered already; this re-check is a safety net
