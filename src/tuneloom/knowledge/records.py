"""What a knowledge base stores and returns: chunks, search hits, and the store protocol.

These records are the contract between the knowledge base (chunking, indexing, hybrid search), its stores
(embedded LanceDB, PostgreSQL with pgvector), the embedding task kind, retrieval inside chat tasks, and serving.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Chunk(BaseModel):
    """One passage of one document, with where it came from and who may see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str = Field(description="Stable id: document id plus position; unchanged while the document is unchanged.")
    doc_id: str = Field(description="The document's path relative to its source, with '/' separators.")
    doc_hash: str = Field(description="SHA-256 of the document's bytes; an update re-embeds a document when it changes.")
    section: list[str] = Field(default_factory=list, description="Heading path, outermost first.")
    position: int = Field(ge=0, description="Index of the chunk within its document.")
    text: str
    tokens: int = Field(ge=0, description="Length in the embedder's tokens.")
    tags: list[str] = Field(default_factory=list, description="Access tags; an empty list means visible to every caller.")
    metadata: dict[str, str] = Field(default_factory=dict)


class Hit(BaseModel):
    """A chunk returned by a search, with its fused score and the ranks that produced it."""

    model_config = ConfigDict(extra="forbid")

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    keyword_rank: int | None = None
    rerank_score: float | None = None


class Filter(BaseModel):
    """What a caller may see and asked to see: access tags it holds (None = all) and exact metadata matches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_tags: frozenset[str] | None = None
    where: dict[str, str] = Field(default_factory=dict)

    def admits(self, chunk: Chunk) -> bool:
        """True when the chunk is visible under this filter (untagged chunks are public)."""
        if self.allowed_tags is not None and chunk.tags and not set(chunk.tags) & self.allowed_tags:
            return False
        return all(chunk.metadata.get(k) == v for k, v in self.where.items())


class IndexMeta(BaseModel):
    """What an index was built with; a query from another embedder is refused."""

    model_config = ConfigDict(extra="forbid")

    knowledge_base: str
    embedder: str = Field(description="Embedder reference: a path, a catalog name, or a registry `name:version`.")
    embedder_hash: str = Field(description="Hash of the embedder's weights and pooling config.")
    dim: int = Field(gt=0)
    content_version: str = Field("", description="Hash over (doc_id, doc_hash) of every indexed document.")
    table: str = Field("", description="The store's table holding the index where a rebuild writes a new one (LanceDB).")


class VectorStore(Protocol):
    """A place that keeps chunks with their vectors and answers dense and keyword searches.

    Fusion, reranking and access filtering happen above the store (tuneloom.knowledge), so every store behaves alike.
    Stores must apply `flt` themselves (never return a chunk the filter does not admit), since a top-k cut after
    the fact would leak counts and starve results.
    """

    def meta(self) -> IndexMeta | None: ...

    def set_meta(self, meta: IndexMeta) -> None: ...

    def documents(self) -> dict[str, str]:
        """doc_id -> doc_hash of every indexed document."""
        ...

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add chunks (replacing any with the same chunk_id); vectors are float32, one row per chunk, L2-normalised."""
        ...

    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    def dense_search(self, vector: np.ndarray, k: int, flt: Filter) -> list[tuple[Chunk, float]]: ...

    def keyword_search(self, text: str, k: int, flt: Filter) -> list[tuple[Chunk, float]]: ...

    def finish(self) -> None:
        """After a build's or update's writes: index maintenance (keyword and vector indexes, compaction)."""
        ...

    def count(self) -> int: ...

    def chunks(self) -> Iterator[Chunk]:
        """Every stored chunk (without its vector), in no particular order."""
        ...

    def close(self) -> None: ...
