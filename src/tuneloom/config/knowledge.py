"""The `knowledge:` section: knowledge bases (sources, chunking, embedder, store, retrieval, access tags)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from tuneloom.config.base import Strict
from tuneloom.config.data import CleanConfig, RedactConfig, SourceConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ChunkingConfig(Strict):
    """Chunks follow the document's structure (headings, paragraphs, tables) within a token budget."""

    max_tokens: Annotated[int, Field(ge=16, le=8192)] = Field(
        200, description="Most embedder tokens per chunk (at most the embedder's window, 256 for MiniLM)."
    )
    overlap: Annotated[int, Field(ge=0)] = Field(32, description="Tokens repeated from the end of the previous chunk.")

    @model_validator(mode="after")
    def _overlap_fits(self) -> ChunkingConfig:
        if self.overlap >= self.max_tokens // 2:
            raise ValueError(f"overlap ({self.overlap}) must be under half of max_tokens ({self.max_tokens})")
        return self


class EmbedderConfig(Strict):
    model: str = Field(
        "all-minilm-l6-v2",
        description="Catalog name, local sentence-transformers folder, or a hub id pulled with `tuneloom models pull`.",
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    bf16: bool = Field(
        True, description="bfloat16 weights on GPUs and CPUs with native bfloat16 (AVX512-BF16, AMX): about 2x faster."
    )


class StoreConfig(Strict):
    kind: Literal["lancedb", "pgvector"] = Field(
        "lancedb", description="lancedb: embedded, in the workspace; pgvector: a server."
    )
    url: str | None = Field(None, description="Server stores: the connection URL (e.g. postgresql://user@host/db).")
    ann_threshold: Annotated[int, Field(ge=1000)] = Field(
        50_000, description="Embedded store: build an approximate (IVF) vector index above this many chunks; exact below."
    )

    @model_validator(mode="after")
    def _url(self) -> StoreConfig:
        if self.kind != "lancedb" and not self.url:
            raise ValueError(f"store.kind '{self.kind}' is a server: set store.url to its connection URL")
        return self


class RetrievalConfig(Strict):
    top_k: Annotated[int, Field(ge=1, le=1000)] = 5
    candidates: Annotated[int, Field(ge=1, le=5000)] = Field(
        50, description="Dense and keyword results each fetched before fusion (and reranking)."
    )
    dense_weight: Annotated[float, Field(ge=0)] = 1.0
    keyword_weight: Annotated[float, Field(ge=0)] = 1.0
    rrf_k: Annotated[int, Field(ge=1)] = Field(60, description="Reciprocal rank fusion constant: 1/(rrf_k + rank).")
    reranker: str | None = Field(None, description="Local cross-encoder folder that reorders the fused candidates.")

    @model_validator(mode="after")
    def _some_weight(self) -> RetrievalConfig:
        if self.dense_weight == 0 and self.keyword_weight == 0:
            raise ValueError("dense_weight and keyword_weight are both 0: give at least one a positive weight")
        return self


class AccessConfig(Strict):
    """Where a chunk's access tags come from; a chunk without tags is visible to every caller."""

    tags_from_folder: bool = Field(False, description="The first sub-folder of a folder source is the document's tag.")
    tags_column: str | None = Field(None, description="Table sources: a column holding tags (comma-separated or a list).")


class KnowledgeConfig(Strict):
    """One knowledge base: documents that are chunked, embedded and searched."""

    name: str
    sources: list[SourceConfig] = Field(min_length=1)
    text_column: str = Field("text", description="Table sources (CSV, JSONL...): the column holding each row's text.")
    title_column: str | None = Field(None, description="Table sources: a column naming each row (its section).")
    clean: CleanConfig = CleanConfig()
    redact: RedactConfig = RedactConfig()
    max_document_mb: Annotated[float, Field(gt=0)] = Field(
        50.0, description="Larger documents are skipped (listed with the reason) instead of read into memory."
    )
    chunking: ChunkingConfig = ChunkingConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    store: StoreConfig = StoreConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    access: AccessConfig = AccessConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.' (it names a workspace folder)")
        return value
