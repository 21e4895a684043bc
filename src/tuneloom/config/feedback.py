"""A task's `feedback` section: how served answers and their ratings become training rows."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from tuneloom.config.base import Strict


class AutoAcceptRule(Strict):
    """Feedback matching a rule is accepted without a reviewer (reviewer recorded as `rule:<name>`).

    A rule matches when the feedback came from one of `key_ids` or `key_names`, or carries one of
    `tags` (any one of the three lists suffices), and, with `require_correction`, has a correction.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Shown as the reviewer: rule:<name>.")
    key_ids: list[str] = Field(default_factory=list, description="API key ids (`tuneloom keys list`) trusted as reviewers.")
    key_names: list[str] = Field(default_factory=list, description="API key names trusted as reviewers.")
    tags: list[str] = Field(default_factory=list, description="Feedback tags that mark a trusted correction.")
    require_correction: bool = Field(True, description="Only feedback with a correction (not a bare rating) matches.")

    @model_validator(mode="after")
    def _names_someone(self) -> AutoAcceptRule:
        if not (self.key_ids or self.key_names or self.tags):
            raise ValueError(f"auto_accept rule '{self.name}' needs key_ids, key_names or tags: whom to trust")
        return self


class FeedbackConfig(Strict):
    """`tasks[].feedback`: review rules and guards for feedback rows (see docs/feedback.md)."""

    auto_accept: list[AutoAcceptRule] = Field(default_factory=list, description="Rules that accept without review.")
    bad_rating_max: Annotated[int, Field(ge=1, le=4)] = Field(
        2, description="A 1-5 rating at or below this marks a bad answer (thumbs down counts as 1)."
    )
    held_out: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.2, description="Share of accepted feedback kept out of training, to measure improvement on what users flagged."
    )
    golden_sets: list[str] = Field(
        default_factory=list,
        description="Prepared dataset folders (relative to the project file) whose test split is a golden set: "
        "feedback rows resembling one never enter training. Every dataset version's test split is checked anyway.",
    )
    leak_threshold: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None,
        description="Near-duplicate similarity (Jaccard of word shingles) that counts as a leak; default data.dedup.threshold.",
    )
