"""The `iterate` and `canary` sections: one turn of the feedback loop, and the canary's routing and rules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tuneloom.config.base import Strict

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class IterateConfig(Strict):
    """`tuneloom iterate`: the next dataset version from accepted feedback, retrained, gated and promoted."""

    min_new_rows: int = Field(
        10, ge=1, description="Fewest accepted, unused feedback rows worth a new version (fewer: exit code 3)."
    )
    feedback_weight: Annotated[float, Field(gt=0)] = Field(
        1.0, description="How many times each feedback row enters the training split (1.5: every row once, half twice)."
    )
    feedback_share: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="Instead of a weight: the share of the training split made of feedback rows (repeated or sampled)."
    )
    start_from: Literal["production", "base"] = Field(
        "production", description="Retrain from the production version's weights, or from the base model."
    )
    golden_metrics: list[str] | None = Field(
        None, description="Metrics that may not regress on the golden test set; default: the task type's headline metric."
    )
    golden_max_drop: Annotated[float, Field(ge=0)] = Field(
        0.0, description="Largest allowed drop of each golden metric against production (0: no regression at all)."
    )
    min_feedback_gain: float | None = Field(
        None,
        description="If set: the new version must beat production by this much on the held-out feedback rows (headline metric).",
    )
    promote_to: Literal["production", "canary"] = Field(
        "production", description="Where a version that passes goes: straight to production, or to the canary alias."
    )
    seed: int = Field(0, description="Seed for sampling feedback rows (feedback_share, fractional weights).")

    @model_validator(mode="after")
    def _weight_or_share(self) -> IterateConfig:
        if self.feedback_share is not None and self.feedback_weight != 1.0:
            raise ValueError("set either iterate.feedback_weight or iterate.feedback_share, not both")
        return self


class CanaryConfig(Strict):
    """The `canary` alias: its share of the traffic addressed to `name@production`, and when it moves."""

    share: Share = Field(0.1, description="Share of the requests to `name` / `name@production` that `name@canary` answers.")
    routing: Literal["request_id", "random"] = Field(
        "request_id",
        description="request_id: the same X-Request-Id always goes the same way (random without the header); random: a seeded draw.",
    )
    seed: int = Field(0, description="Seed of the routing draw (and of the request-id hash).")
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = Field(0.95, description="Confidence level of the monitor's intervals.")
    min_requests: int = Field(50, ge=1, description="Requests each side must have answered before a decision.")
    min_rated: int = Field(20, ge=1, description="Rated requests each side must have before a decision on ratings.")
    max_drop: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="Promote once the thumbs-up rate of the canary is surely no more than this below production's."
    )
    max_latency_ratio: Annotated[float, Field(gt=1)] = Field(
        1.5, description="Roll back when the canary's mean latency exceeds production's by more than this factor."
    )
    auto: bool = Field(True, description="`tuneloom monitor` applies its decision (promote / roll back); false: report only.")
