"""Where every piece of feedback on a task went: feedback in = accepted + edited + rejected + pending + duplicates + leaked."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from tuneloom.config import Project
from tuneloom.feedback.models import FeedbackAccounting
from tuneloom.feedback.store import NOT_APPLICABLE, ReviewRow, open_store, session

_BUCKET = {"duplicate": "duplicates", "leaked": "leaked", "invalid": "rejected"}


def accounting(project: Project, task_name: str | None = None) -> FeedbackAccounting:
    """Each proposed feedback item in exactly one bucket (guards' verdicts override the review state)."""
    task = project.config.task(task_name)
    store = open_store(project)
    try:
        with session(store) as s:
            stmt = (
                select(ReviewRow.state, ReviewRow.guard, ReviewRow.used_version.is_not(None), func.count())
                .where(ReviewRow.task == task.name)
                .group_by(ReviewRow.state, ReviewRow.guard, ReviewRow.used_version.is_not(None))
            )
            groups = s.execute(stmt).all()
    finally:
        store.close()
    buckets: Counter[str] = Counter()
    for state, guard, used, n in groups:
        if state == NOT_APPLICABLE:
            buckets["not_applicable"] += n
            continue
        buckets["received_in"] += n
        bucket = _BUCKET.get(guard or "") if state in ("accepted", "edited") else None
        buckets[bucket or state] += n
        buckets["rejected_by_guards"] += n if guard == "invalid" and state in ("accepted", "edited") else 0
        if state in ("accepted", "edited") and guard not in _BUCKET:
            buckets["used" if used else "available"] += n
    return FeedbackAccounting(
        task=task.name,
        received=buckets["received_in"] + buckets["not_applicable"],
        not_applicable=buckets["not_applicable"],
        feedback_in=buckets["received_in"],
        accepted=buckets["accepted"],
        edited=buckets["edited"],
        rejected=buckets["rejected"],
        rejected_by_guards=buckets["rejected_by_guards"],
        pending=buckets["pending"],
        duplicates=buckets["duplicates"],
        leaked=buckets["leaked"],
        used=buckets["used"],
        available=buckets["available"],
    )
