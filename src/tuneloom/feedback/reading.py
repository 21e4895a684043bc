"""Reading the feedback store: filtered lists, one item in full, and statistics per served version."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import Select, func, or_, select

from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.feedback.models import FeedbackQuery, FeedbackView, Interval, VersionStats
from tuneloom.feedback.store import open_store, session
from tuneloom.serve.feedback import CompletionRow, FeedbackRow, FeedbackStore


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The share and its Wilson score interval (closed form; no statistics package needed for four lines)."""
    if n <= 0:
        raise ValueError("a share needs at least one observation")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def utc(moment: dt.datetime) -> dt.datetime:
    """A time as UTC (naive: taken as UTC); SQLite stores the server's UTC times without their zone."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def served_filter(query: FeedbackQuery) -> list[Any]:
    """SQL conditions on the completion for the model / version / alias parts of a query."""
    conds: list[Any] = []
    if query.version is not None:
        version = query.version if ":" in query.version else f"{query.model or ''}:{query.version}"
        if version.startswith(":"):
            raise TuneloomError(f"version '{query.version}' needs a model: give --model NAME, or write NAME:{query.version}")
        conds.append(CompletionRow.served == version)
    elif query.model is not None:
        conds.append(
            or_(CompletionRow.served == query.model, CompletionRow.served.startswith(f"{query.model}:", autoescape=True))
        )
    if query.alias is not None:
        alias = query.alias if "@" in query.alias else f"{query.model or ''}@{query.alias}"
        conds.append(
            CompletionRow.model.endswith(alias, autoescape=True) if alias.startswith("@") else CompletionRow.model == alias
        )
    return conds


def _select(query: FeedbackQuery) -> Select[FeedbackRow, CompletionRow]:
    stmt = select(FeedbackRow, CompletionRow).join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
    conds = served_filter(query)
    if query.min_rating is not None:
        conds.append(FeedbackRow.rating >= query.min_rating)
    if query.max_rating is not None:
        conds.append(FeedbackRow.rating <= query.max_rating)
    if query.since is not None:
        conds.append(FeedbackRow.created >= utc(query.since))
    if query.until is not None:
        conds.append(FeedbackRow.created < utc(query.until))
    if query.has_correction is not None:
        has = FeedbackRow.correction.is_not(None) & (FeedbackRow.correction != "")
        conds.append(has if query.has_correction else ~has)
    return stmt.where(*conds).order_by(FeedbackRow.id)


def _view(fb: FeedbackRow, c: CompletionRow, full: bool) -> FeedbackView:
    return FeedbackView(
        id=fb.id,
        created=fb.created,
        completion_id=fb.completion_id,
        requested=c.model,
        served=c.served,
        endpoint=c.endpoint,
        rating=fb.rating,
        rating_kind=fb.rating_kind,
        correction=fb.correction,
        tags=list(fb.tags or []),
        key_id=fb.key_id,
        latency_ms=c.latency_ms,
        request=c.request if full else None,
        response=c.response if full else None,
    )


def query_feedback(store: FeedbackStore, query: FeedbackQuery) -> list[FeedbackView]:
    """Feedback matching `query`, oldest first (tags are matched here: JSON columns differ between databases)."""
    wanted = set(query.tags)
    out: list[FeedbackView] = []
    with session(store) as s:
        for fb, c in s.execute(_select(query)):
            if wanted and not wanted & set(fb.tags or []):
                continue
            out.append(_view(fb, c, full=False))
            if query.limit is not None and len(out) >= query.limit:
                break
    return out


def list_feedback(project: Project, query: FeedbackQuery | None = None) -> list[FeedbackView]:
    """The project's feedback matching `query` (see `FeedbackQuery`)."""
    store = open_store(project)
    try:
        return query_feedback(store, query or FeedbackQuery())
    finally:
        store.close()


def show_feedback(project: Project, feedback_id: int) -> FeedbackView:
    """One feedback row with the request and the answer it rates."""
    store = open_store(project)
    try:
        with session(store) as s:
            found = s.execute(
                select(FeedbackRow, CompletionRow)
                .join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
                .where(FeedbackRow.id == feedback_id)
            ).first()
    finally:
        store.close()
    if found is None:
        raise TuneloomError(f"no feedback with id {feedback_id}; `tuneloom feedback list` shows the ids")
    return _view(found[0], found[1], full=True)


def _percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)])


def feedback_stats(project: Project, query: FeedbackQuery | None = None) -> list[VersionStats]:
    """Per served version: completions, feedback, share rated, mean rating, thumbs-up rate with its interval, latency."""
    query = query or FeedbackQuery()
    store = open_store(project)
    try:
        views = query_feedback(store, query.model_copy(update={"limit": None}))
        with session(store) as s:
            conds = served_filter(query)
            if query.since is not None:
                conds.append(CompletionRow.created >= utc(query.since))
            if query.until is not None:
                conds.append(CompletionRow.created < utc(query.until))
            latencies: dict[str, list[int]] = defaultdict(list)
            for served, latency in s.execute(select(CompletionRow.served, CompletionRow.latency_ms).where(*conds)):
                latencies[served].append(latency)
            rated = dict(
                s.execute(
                    select(CompletionRow.served, func.count(func.distinct(FeedbackRow.completion_id)))
                    .join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
                    .where(*conds)
                    .group_by(CompletionRow.served)
                ).all()
            )
    finally:
        store.close()
    return [_version_stats(v, latencies[v], int(rated.get(v, 0)), [f for f in views if f.served == v]) for v in sorted(latencies)]


def _version_stats(served: str, latencies: list[int], rated: int, views: list[FeedbackView]) -> VersionStats:
    ratings = [f.rating for f in views]
    return VersionStats(
        served=served,
        completions=len(latencies),
        feedback=len(views),
        share_rated=rated / len(latencies) if latencies else 0.0,
        mean_rating=statistics.fmean(ratings) if ratings else None,
        thumbs_up_rate=wilson_interval(sum(r >= 4 for r in ratings), len(ratings)) if ratings else None,
        corrections=sum(1 for f in views if f.correction),
        latency_p50_ms=_percentile(latencies, 0.5),
        latency_p95_ms=_percentile(latencies, 0.95),
    )
