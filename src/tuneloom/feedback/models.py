"""What the feedback API takes and returns (pydantic, so the CLI, the console and JSON output share them)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

ReviewState = Literal["pending", "accepted", "edited", "rejected"]


class FeedbackQuery(BaseModel):
    """Which feedback to read; every field narrows the selection (None: no restriction)."""

    model: str | None = Field(None, description="Registered or served model name (what answered, without :version).")
    version: str | None = Field(None, description="A version of `model` ('3'), or a full 'name:3'.")
    alias: str | None = Field(None, description="Requests addressed to name@ALIAS (e.g. production, canary).")
    min_rating: int | None = Field(None, ge=1, le=5)
    max_rating: int | None = Field(None, ge=1, le=5)
    tags: list[str] = Field(default_factory=list, description="Feedback carrying any of these tags.")
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    has_correction: bool | None = None
    limit: int | None = Field(None, gt=0)


class FeedbackView(BaseModel):
    """One feedback row with the answer it rates (texts as stored: redacted when serve.redact was on)."""

    id: int
    created: dt.datetime
    completion_id: str
    requested: str  # the `model` field of the request (name, name:version, name@alias)
    served: str  # the version that answered
    endpoint: str
    rating: int
    rating_kind: str
    correction: str | None
    tags: list[str]
    key_id: str | None
    latency_ms: int
    request: Any = None  # only from `show`
    response: Any = None


class Interval(BaseModel):
    value: float
    low: float
    high: float


class VersionStats(BaseModel):
    """Feedback on one served version: volume, how much of it was rated, how well, and how fast it answered."""

    served: str
    completions: int
    feedback: int
    share_rated: float  # completions with at least one rating / completions
    mean_rating: float | None
    thumbs_up_rate: Interval | None  # ratings of 4-5 (thumbs up) among all ratings, 95% Wilson interval
    corrections: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class ProposalSummary(BaseModel):
    """What `propose` added to the review queue this time (feedback already there is never added twice)."""

    task: str
    examined: int = 0  # feedback rows not in the queue before this call
    queued: int = 0  # of them, now waiting in the queue (pending or auto-accepted)
    auto_accepted: int = 0
    needs_correction: int = 0  # bad answers without a correction: pending, no rows until a reviewer writes one
    not_applicable: int = 0  # nothing the task could learn from (e.g. a thumbs up for an SFT task)
    flagged: int = 0  # rows resembling a test/golden example or a training row (advisory; the guards decide)
    formats: dict[str, int] = Field(default_factory=dict)
    reasons: dict[str, int] = Field(default_factory=dict)


class QueueFilter(BaseModel):
    """Which queue items to list or act on."""

    ids: list[int] | None = None
    states: list[ReviewState] | None = None
    formats: list[str] | None = None
    model_version: str | None = None
    flagged: bool | None = Field(None, description="True: only items with a leak/duplicate flag; False: only without.")
    with_rows: bool | None = Field(None, description="True: only items that already have training rows.")
    unused: bool = Field(True, description="Skip items a registered model version already used.")
    offset: int = Field(0, ge=0, description="list_queue: skip this many matching items (paging).")
    limit: int | None = Field(None, gt=0, description="list_queue: return at most this many.")


class QueueItem(BaseModel):
    """One review queue entry, as a reviewer sees it."""

    id: int
    task: str
    feedback_id: int
    completion_id: str
    model_version: str
    created: dt.datetime
    state: ReviewState
    format: str
    rows: list[dict[str, Any]]
    reason: str | None
    prompt: str  # the input, one line per turn
    answer: str | None  # the model's answer (chat) or labels (classification)
    correction: str | None  # the user's correction, or the reviewer's edit when there is one
    rating: int
    tags: list[str]
    flags: list[dict[str, Any]]
    reviewer: str | None
    reviewed: dt.datetime | None
    note: str | None
    guard: str | None
    used_version: str | None


class FeedbackAccounting(BaseModel):
    """feedback in = accepted + edited + rejected + pending + duplicates + leaked (each item counted once)."""

    task: str
    received: int  # feedback rows on the task's model, proposed so far
    not_applicable: int  # nothing to learn from (never queued)
    feedback_in: int  # received - not_applicable
    accepted: int
    edited: int
    rejected: int  # by a reviewer, plus rows the data guards refused (`rejected_by_guards`)
    rejected_by_guards: int
    pending: int
    duplicates: int
    leaked: int
    used: int  # accepted or edited and used by a registered model version (training or held-out evaluation)
    available: int  # accepted or edited, passed or not yet through the guards, not used yet

    @property
    def holds(self) -> bool:
        parts = self.accepted + self.edited + self.rejected + self.pending + self.duplicates + self.leaked
        return self.feedback_in == parts

    def equation(self) -> str:
        return (
            f"feedback in {self.feedback_in} = accepted {self.accepted} + edited {self.edited} + rejected {self.rejected} "
            f"+ pending {self.pending} + duplicates {self.duplicates} + leaked {self.leaked}"
        )


class FeedbackContribution(BaseModel):
    """Accepted and edited feedback not yet used, after the guards, as a dataset version of its own."""

    task: str
    version: str  # content hash; the folder is datasets/<task>/feedback-<version>
    path: str
    format: str  # the task's row format (sft, dpo, kto+dpo, label)
    rows: list[dict[str, Any]]  # training rows (train.jsonl), each with `lineage`
    feedback_ids: list[int]  # the feedback behind `rows`
    held_out: list[dict[str, Any]]  # evaluation rows (test.jsonl), never trained on
    held_out_ids: list[int]
    excluded: dict[str, list[int]] = Field(default_factory=dict)  # duplicate / leaked / invalid -> feedback ids
    reused: bool = False

    @property
    def empty(self) -> bool:
        return not self.rows and not self.held_out
