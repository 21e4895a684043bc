"""The feedback loop's data side: served answers and their ratings -> reviewed, guarded training rows.

    from tuneloom.feedback import propose, list_queue, accept, contribution, mark_used, accounting

    propose(project, task)          new feedback -> review queue (idempotent; auto-accept rules apply)
    list_queue / accept / edit / reject     the review queue (bulk with a `QueueFilter`)
    contribution(project, task)     accepted rows after the guards, as datasets/<task>/feedback-<hash>
    mark_used(project, task, ids, "name:N")  after the version that used them is registered
    accounting(project, task)       feedback in = accepted + edited + rejected + pending + duplicates + leaked
    list_feedback / show_feedback / feedback_stats   reading the store

The rows each task type makes come from its kind (`TaskKind.feedback_rows`); the queue lives in the
feedback database itself (SQLite or PostgreSQL, `serve.feedback_db`).
"""

from __future__ import annotations

from tuneloom.feedback.accounting import accounting
from tuneloom.feedback.contribution import contribution, mark_used
from tuneloom.feedback.models import (
    FeedbackAccounting,
    FeedbackContribution,
    FeedbackQuery,
    FeedbackView,
    Interval,
    ProposalSummary,
    QueueFilter,
    QueueItem,
    VersionStats,
)
from tuneloom.feedback.queue import accept, edit, list_queue, propose, reject
from tuneloom.feedback.reading import feedback_stats, list_feedback, show_feedback, wilson_interval
from tuneloom.feedback.store import FeedbackDatabaseError

__all__ = [
    "FeedbackAccounting",
    "FeedbackContribution",
    "FeedbackDatabaseError",
    "FeedbackQuery",
    "FeedbackView",
    "Interval",
    "ProposalSummary",
    "QueueFilter",
    "QueueItem",
    "VersionStats",
    "accept",
    "accounting",
    "contribution",
    "edit",
    "feedback_stats",
    "list_feedback",
    "list_queue",
    "mark_used",
    "propose",
    "reject",
    "show_feedback",
    "wilson_interval",
]
