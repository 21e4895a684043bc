"""The `eval` and `gate` sections of a task, and the LLM judge endpoint."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tuneloom.config.base import Strict

DEFAULT_RUBRIC = (
    "5: correct and complete, agrees with the reference in every point that matters. "
    "4: correct, with a minor omission or imprecision. "
    "3: partly correct, or correct but with a notable error or missing point. "
    "2: mostly wrong or unhelpful, with a little that is right. "
    "1: wrong, contradicts the reference, off-topic or empty."
)


class JudgeConfig(Strict):
    """A judge endpoint: any server that speaks the OpenAI chat-completions API.

    Used by `tuneloom.evaluate.judge`; the API key stays in the environment variable it names.
    """

    url: str = Field(
        pattern=r"^https?://",
        description="Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 ('/chat/completions' is appended).",
    )
    model: str = Field(min_length=1, description="Model name sent in each request.")
    rubric: str = Field(
        DEFAULT_RUBRIC, min_length=1, description="What each score from 1 to 5 means; goes into the system prompt."
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the API key (the key itself never goes in the project file).",
    )
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_examples: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Judge at most the first N evaluated examples (each one is a request per model)."
    )


class EvalConfig(Strict):
    metrics: list[str] | None = Field(None, description="Subset of the task's metrics to show (default: all of them).")
    max_new_tokens: Annotated[int, Field(gt=0, le=4096)] = Field(
        96, description="Chat tasks: longest generated answer in tokens."
    )
    max_examples: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Evaluate on at most N test examples (sampled with the split seed)."
    )
    batch_size: Annotated[int, Field(gt=0)] = Field(8, description="Test examples per forward pass (or generation batch).")
    forgetting_check: bool = Field(
        True, description="Chat tasks: also score base and tuned on Tuneloom's general-ability set (48 items)."
    )
    judge: JudgeConfig | None = Field(None, description="Chat tasks: an optional LLM-as-judge endpoint.")
    baselines: bool = Field(
        True,
        description="Also fit cheap baselines on the train split (TF-IDF and embedding logistic regression, "
        "nearest-neighbour answers, a gazetteer) and score them on the same test examples.",
    )


class BeatBaselines(Strict):
    """The tuned model must beat the best cheap baseline on one metric."""

    metric: str = Field(min_length=1, description="The metric to compare on, e.g. accuracy or token_f1.")
    margin: float = Field(0.0, description="How much better than the best baseline the tuned model must be.")


class GateConfig(Strict):
    """Rules a tuned model must pass before it may be promoted (`tuneloom gate RUN`)."""

    min: dict[str, float] = Field(
        default_factory=dict, description="Metric -> lowest allowed value (highest for loss/perplexity)."
    )
    max_drop: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> largest allowed drop against production (against base while nothing is in production).",
    )
    max_class_f1_drop: Annotated[float, Field(ge=0)] | None = Field(
        None, description="Classification: largest allowed per-class F1 drop against production (or base)."
    )
    max_latency_ms: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Largest allowed mean latency per test example of the tuned model."
    )
    max_forgetting: Annotated[float, Field(ge=0)] | None = Field(
        None, description="Chat: largest allowed drop of token F1 on the general-ability set (base minus tuned)."
    )
    beat_baselines: BeatBaselines | None = Field(
        None, description="The tuned model must beat the best cheap baseline by a margin on a metric (needs eval.baselines)."
    )
