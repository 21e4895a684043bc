"""The `embedding` section of an embedding task: where training pairs come from, negatives and the loss."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from tuneloom.config.base import Strict


class EmbeddingConfig(Strict):
    """How an embedding task turns its data and its knowledge base into training pairs."""

    link_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        0.4,
        description="Question/answer data: an answer is linked to the chunk that grounds it when their score "
        "(mean of answer-word overlap and embedding cosine) reaches this; others are counted as unlinked and left out.",
    )
    pseudo_queries: bool = Field(
        False,
        description="Also train on pseudo-queries from the structure (headings, titles, first sentences) of every "
        "chunk. Tasks whose data are the documents themselves (`columns: {text: ...}`) always use them.",
    )
    hard_negatives: Annotated[int, Field(ge=0, le=16)] = Field(
        1, description="Hard negatives per pair, mined over the whole knowledge base with the base embedder; 0: in-batch only."
    )
    duplicate_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8,
        description="A mined negative whose word-trigram overlap (Jaccard) with the positive reaches this is a "
        "near-duplicate of it and is never used as a negative.",
    )
    matryoshka_dims: list[int] | None = Field(
        None, description="Also train truncated embeddings of these sizes (MatryoshkaLoss), e.g. [384, 256, 128, 64]."
    )

    @field_validator("matryoshka_dims")
    @classmethod
    def _dims(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(d <= 0 for d in value)):
            raise ValueError("give positive embedding sizes, largest first, e.g. [384, 256, 128, 64]")
        return sorted(set(value), reverse=True) if value else value
