"""The `rag` section of a task that names a knowledge base: passages in the prompt, RAFT-style training."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tuneloom.config.base import Strict


class RagConfig(Strict):
    """How retrieved passages enter the prompt, in training (RAFT), evaluation, `tuneloom ask` and serving."""

    top_k: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="Passages in each prompt: the retrieved top k; in training the grounding passage plus k-1 distractors."
    )
    absent_share: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.2,
        description="Training: share of grounded examples whose prompt holds distractors only (the grounding passage "
        "left out), so the model also learns to answer when the context does not help.",
    )
    min_support: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.6,
        description="A passage grounds an answer when it contains at least this share of the answer's content words.",
    )
    passage_chars: Annotated[int, Field(ge=100, le=20_000)] = Field(
        700, description="Longest passage text put in a prompt, in characters (longer ones are cut at a word)."
    )
