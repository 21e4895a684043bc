"""`monitor_canary`: the canary against production on live feedback, and the rules that move it.

Both sides are measured over the same period (since the canary started) from the feedback store:
requests answered, thumbs-up rate among rated answers (a rating of 4 or 5; thumbs up is 5),
corrections per request, and latency, each with an interval. The `canary` section of the project
file says when the evidence suffices: the canary is rolled back as soon as it is surely worse, and
promoted once it has enough requests and ratings and is surely not worse by more than `max_drop`.
Each move goes into the registry history with the figures as its reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tuneloom.config import CanaryConfig, Project
from tuneloom.errors import TuneloomError
from tuneloom.iterate.stats import mean_interval, rate_difference, wilson
from tuneloom.registry import ModelRegistry
from tuneloom.registry.lookup import registry_for
from tuneloom.serve.feedback import CompletionRow, FeedbackRow, FeedbackStore

Decision = Literal["promote", "rollback", "wait", "none"]
THUMBS_UP_MIN = 4  # ratings are 1..5; thumbs up is stored as 5, thumbs down as 1


class ArmStats(BaseModel):
    """One side (production or canary) over the monitored period."""

    served: str
    requests: int
    rated: int
    thumbs_up: int
    up_rate: float
    up_interval: tuple[float, float]
    corrected: int
    corrections_per_request: float
    corrections_interval: tuple[float, float]
    latency_ms: float
    latency_interval: tuple[float, float]


class CanaryReport(BaseModel):
    """What `tuneloom monitor` found and decided."""

    model: str
    production: int | None
    canary: int | None
    since: str | None = None
    arms: dict[str, ArmStats] = {}
    up_rate_difference: tuple[float, float, float] | None = None  # canary - production, low, high
    corrections_difference: tuple[float, float, float] | None = None
    decision: Decision
    reason: str
    applied: bool = False


def arm_stats(store: FeedbackStore, served: str, since: dt.datetime, confidence: float) -> ArmStats:
    """Requests answered by `served` since `since`, with the feedback they received."""
    answered = (CompletionRow.served == served, CompletionRow.created >= since)
    with Session(store.engine) as session:
        completions = session.execute(select(CompletionRow.id, CompletionRow.latency_ms).where(*answered)).all()
        feedback = session.execute(
            select(FeedbackRow.completion_id, FeedbackRow.rating, FeedbackRow.correction)
            .join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
            .where(*answered)
            .order_by(FeedbackRow.id)
        ).all()
    latest: dict[str, int] = {}
    corrected: set[str] = set()
    for row in feedback:  # the latest rating of a completion counts; any correction marks it corrected
        latest[row.completion_id] = row.rating
        if row.correction:
            corrected.add(row.completion_id)
    n, rated = len(completions), len(latest)
    up = sum(1 for r in latest.values() if r >= THUMBS_UP_MIN)
    latency, low, high = mean_interval([float(c.latency_ms) for c in completions], confidence)
    return ArmStats(
        served=served,
        requests=n,
        rated=rated,
        thumbs_up=up,
        up_rate=up / rated if rated else 0.0,
        up_interval=wilson(up, rated, confidence),
        corrected=len(corrected),
        corrections_per_request=len(corrected) / n if n else 0.0,
        corrections_interval=wilson(len(corrected), n, confidence),
        latency_ms=latency,
        latency_interval=(low, high),
    )


def _canary_since(registry: ModelRegistry, name: str, canary: int) -> dt.datetime:
    """When the current canary started (its latest `canary` history entry)."""
    starts = [e for e in registry.history(name) if e.action == "canary" and e.to_version == canary]
    if not starts:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return dt.datetime.strptime(starts[-1].time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _worse(
    rules: CanaryConfig, prod: ArmStats, can: ArmStats, up: tuple[float, float, float], corr: tuple[float, float, float]
) -> list[str]:
    """Why the canary is surely worse than production (empty: it is not, or not yet known)."""
    why = []
    enough = min(prod.requests, can.requests) >= rules.min_requests
    if min(prod.rated, can.rated) >= rules.min_rated and up[2] < 0:
        why.append(
            f"thumbs-up rate {_pct(can.up_rate)} vs production {_pct(prod.up_rate)} "
            f"(difference {_pct(up[0])}, interval {_pct(up[1])} to {_pct(up[2])})"
        )
    if enough and corr[1] > 0:
        why.append(
            f"corrections per request {_pct(can.corrections_per_request)} vs production {_pct(prod.corrections_per_request)} "
            f"(difference interval {_pct(corr[1])} to {_pct(corr[2])})"
        )
    if enough and can.latency_interval[0] > rules.max_latency_ratio * prod.latency_ms:
        why.append(
            f"latency {can.latency_ms:.0f} ms vs production {prod.latency_ms:.0f} ms "
            f"(over {rules.max_latency_ratio:g}x even at the interval's low end)"
        )
    return why


def decide(
    rules: CanaryConfig, prod: ArmStats, can: ArmStats
) -> tuple[Decision, str, tuple[float, float, float], tuple[float, float, float]]:
    """The rules applied to both sides: (decision, reason, thumbs-up difference, corrections difference)."""
    up = rate_difference((can.thumbs_up, can.rated), (prod.thumbs_up, prod.rated), rules.confidence)
    corr = rate_difference((can.corrected, can.requests), (prod.corrected, prod.requests), rules.confidence)
    worse = _worse(rules, prod, can, up, corr)
    if worse:
        return "rollback", f"canary {can.served} is worse than {prod.served}: " + "; ".join(worse), up, corr
    missing = [
        f"{side} has {getattr(arm, field)} {what}, needs {need}"
        for side, arm in (("production", prod), ("canary", can))
        for field, what, need in (("requests", "requests", rules.min_requests), ("rated", "rated answers", rules.min_rated))
        if getattr(arm, field) < need
    ]
    if missing:
        return "wait", "not enough evidence yet: " + "; ".join(missing), up, corr
    if up[1] >= -rules.max_drop and corr[2] <= rules.max_drop:
        reason = (
            f"canary {can.served} is no worse than {prod.served} after {can.requests} requests ({can.rated} rated): "
            f"thumbs-up {_pct(can.up_rate)} vs {_pct(prod.up_rate)} (difference at least {_pct(up[1])}, "
            f"allowed -{_pct(rules.max_drop)}), corrections per request {_pct(can.corrections_per_request)} vs "
            f"{_pct(prod.corrections_per_request)}"
        )
        return "promote", reason, up, corr
    return (
        "wait",
        f"not yet sure the canary is no worse: thumbs-up difference interval {_pct(up[1])} to {_pct(up[2])}, "
        f"corrections difference interval {_pct(corr[1])} to {_pct(corr[2])} (allowed drop {_pct(rules.max_drop)})",
        up,
        corr,
    )


def _store(project: Project) -> FeedbackStore:
    return FeedbackStore.for_workspace(project.workspace, project.config.serve.feedback_db)


def monitor_canary(project: Project, task_name: str | None = None, apply: bool | None = None) -> CanaryReport:
    """Compare the task's canary with production on live feedback; apply the decision when `apply`
    (default: the project's `canary.auto`). A promotion or rollback is recorded with its reason."""
    task = project.config.task(task_name)
    name = task.registry_name or task.name
    rules = project.config.canary
    registry = registry_for(project)
    production, canary = registry.production(name), registry.canary(name)
    if canary is None or production is None:
        what = "no canary" if canary is None else "no production version"
        return CanaryReport(model=name, production=production, canary=canary, decision="none", reason=f"{name} has {what}")
    if canary == production:  # left by an interrupted promotion: nothing to compare, only the alias to clear
        registry.promote_canary(name, reason=f"canary {canary} already production; alias cleared")
        return CanaryReport(model=name, production=production, canary=None, decision="none", reason="canary was production")
    since = _canary_since(registry, name, canary)
    try:
        store = _store(project)
        prod = arm_stats(store, f"{name}:{production}", since, rules.confidence)
        can = arm_stats(store, f"{name}:{canary}", since, rules.confidence)
        store.close()
    except SQLAlchemyError as exc:
        raise TuneloomError(
            f"feedback database unavailable ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); nothing was changed, run again"
        ) from None
    decision, reason, up, corr = decide(rules, prod, can)
    report = CanaryReport(
        model=name,
        production=production,
        canary=canary,
        since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        arms={"production": prod, "canary": can},
        up_rate_difference=up,
        corrections_difference=corr,
        decision=decision,
        reason=reason,
    )
    if (rules.auto if apply is None else apply) and decision in ("promote", "rollback"):
        move = registry.promote_canary if decision == "promote" else registry.rollback_canary
        move(name, reason=f"monitor: {reason}")
        report.applied = True
    return report
