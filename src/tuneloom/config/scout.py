"""The `scout` section: candidate base models, their precisions and the limits they must meet."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tuneloom.config.base import Strict

ScoutPrecision = Literal["fp32", "bf16", "int8", "nf4"]


class ScoutCandidate(Strict):
    """One candidate base model, optionally at its own precisions and with a display label."""

    model: str = Field(description="Catalog name, local model folder, or hub id (hub ids only once pulled).")
    precisions: list[ScoutPrecision] | None = Field(None, min_length=1, description="Default: scout.precisions.")
    label: str | None = Field(None, description="Name shown in the report (default: the model reference).")


class ScoutConstraints(Strict):
    """Limits a candidate must meet to be recommended; a candidate that breaks one is marked with the reason."""

    max_memory_gb: Annotated[float, Field(gt=0)] | None = Field(None, description="Largest measured peak memory.")
    max_latency_ms: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="Largest latency of one request at batch 1 (chat: first token plus max_new_tokens decoded).",
    )
    licenses: list[str] | None = Field(None, description="Allowed licenses, e.g. [apache-2.0, mit]; 'unknown' fails.")
    min_context: Annotated[int, Field(gt=0)] | None = Field(None, description="Smallest allowed context window (tokens).")


class ScoutConfig(Strict):
    """`tuneloom scout`: candidate base models measured on this machine and the task's validation data."""

    candidates: list[str | ScoutCandidate] = Field(
        default_factory=list,
        description="Candidates for every task (a task listed under `tasks` uses its own list).",
    )
    tasks: dict[str, list[str | ScoutCandidate]] = Field(default_factory=dict, description="Task name -> candidates.")
    precisions: list[ScoutPrecision] = Field(["bf16"], min_length=1, description="Precisions of each candidate, one row each.")
    constraints: ScoutConstraints = ScoutConstraints()
    time_budget_s: Annotated[float, Field(gt=0)] = Field(
        900,
        description="Time for the whole scout; each candidate gets an equal share of what is left.",
    )
    few_shot: Annotated[int, Field(ge=0, le=16)] = Field(2, description="Chat: training examples shown before each question.")
    sample_size: Annotated[int, Field(gt=0)] = Field(32, description="Validation examples scored per candidate (sampled).")
    probe_train_size: Annotated[int, Field(gt=1)] = Field(
        200,
        description="Classification: training examples the linear probe on embeddings is fitted on.",
    )
    max_new_tokens: Annotated[int, Field(gt=0, le=1024)] = 48
    context_length: Annotated[int, Field(gt=8)] | None = Field(
        None,
        description="Inference context for the memory estimates (default: the task's train.max_length).",
    )
    domain_text: str | None = Field(
        None,
        description="A raw text file of the domain (relative to the project file) for perplexity.",
    )
    quality_tolerance: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02,
        description="Quality within this much of the best counts as equal; the cheapest such candidate is chosen.",
    )
