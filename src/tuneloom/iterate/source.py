"""Where iterate's feedback rows come from: the review queue's API (`tuneloom.feedback`).

`FeedbackSource` is what iterate needs of it; `ReviewedFeedback` is the real one. A database that is
locked or unreachable becomes `FeedbackUnavailable` (nothing was changed; run again later).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from tuneloom.config import Project
from tuneloom.errors import TuneloomError


class FeedbackUnavailable(TuneloomError):
    """The feedback database could not be read or written; retrying later is safe."""


class FeedbackSource(Protocol):
    def contribution(self) -> Any:
        """Accepted feedback rows not used yet, after the guards (a `FeedbackContribution`)."""

    def mark_used(self, feedback_ids: list[int], model_version: str) -> None:
        """Record that a registered version used these feedback rows."""


@contextmanager
def _database(what: str) -> Iterator[None]:
    from tuneloom.feedback.store import FeedbackDatabaseError

    try:
        yield
    except (FeedbackDatabaseError, SQLAlchemyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise FeedbackUnavailable(f"feedback database unavailable while {what}: {first}") from None


class ReviewedFeedback:
    """The project's review queue: new feedback proposed (auto-accept rules apply), accepted rows read."""

    def __init__(self, project: Project, task_name: str) -> None:
        self.project, self.task = project, task_name

    def contribution(self) -> Any:
        from tuneloom.feedback import contribution, propose

        with _database("reading accepted feedback (nothing was changed; run again)"):
            propose(self.project, self.task)
            return contribution(self.project, self.task)

    def mark_used(self, feedback_ids: list[int], model_version: str) -> None:
        from tuneloom.feedback import mark_used

        with _database(f"marking the feedback used by {model_version} (run `tuneloom iterate` again to finish)"):
            mark_used(self.project, self.task, feedback_ids, model_version)
