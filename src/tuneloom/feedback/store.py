"""The review queue's table, next to the completions and feedback in the same database, and safe sessions.

One row per (task, feedback id): what the feedback became (rows in the task's training format,
with lineage), where it stands in review, what the guards found and which model version used it.
The unique constraint makes proposing idempotent, even with two proposers at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.serve.feedback import Base, FeedbackStore

STATES = ("pending", "accepted", "edited", "rejected")
NOT_APPLICABLE = "not_applicable"  # recorded so it is looked at once, never shown for review


class FeedbackDatabaseError(TuneloomError):
    """The feedback database is locked, unreachable or failed a statement."""


class ConcurrentChange(FeedbackDatabaseError):
    """Another process wrote the same queue rows at the same time (a retry sees its work)."""


class ReviewRow(Base):
    __tablename__ = "tuneloom_review"
    __table_args__ = (UniqueConstraint("task", "feedback_id", name="uq_tuneloom_review_task_feedback"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(100), index=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("tuneloom_feedback.id"), index=True)
    completion_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(200))  # the version that answered, e.g. acme-support:3
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | accepted | edited | rejected | not_applicable
    format: Mapped[str] = mapped_column(String(8))  # sft | dpo | kto | label | none
    rows: Mapped[Any] = mapped_column(JSON, default=list)  # training rows, each with its lineage
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)  # why there are no rows
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)  # the reviewer's edit
    flags: Mapped[Any] = mapped_column(JSON, default=list)  # advisory leak / duplicate findings for reviewers
    reviewer: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reviewed: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    guard: Mapped[str | None] = mapped_column(String(16), nullable=True)  # passed | duplicate | leaked | invalid
    guard_detail: Mapped[Any] = mapped_column(JSON, nullable=True)
    held_out: Mapped[bool] = mapped_column(Boolean, default=False)
    used_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    used: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def open_store(project: Project) -> FeedbackStore:
    """The project's feedback database (serve.feedback_db, default SQLite in the workspace), review table included."""
    try:
        return FeedbackStore.for_workspace(project.workspace, project.config.serve.feedback_db)
    except TuneloomError as exc:
        raise FeedbackDatabaseError(str(exc)) from None


@contextmanager
def session(store: FeedbackStore, write: bool = False) -> Iterator[Session]:
    """A session (one transaction when `write`); database failures become one clear message."""
    try:
        with Session(store.engine, expire_on_commit=False) as s:
            if write:
                with s.begin():
                    if store.engine.dialect.name == "sqlite":
                        # take the write lock first (waiting busy_timeout for it): a transaction that reads and
                        # then writes after another writer committed would fail at once in WAL mode
                        s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                    yield s
            else:
                yield s
    except IntegrityError:
        raise ConcurrentChange(
            f"feedback database {store.display_url}: another process changed the review queue at the same time; "
            f"nothing was changed, run the command again"
        ) from None
    except OperationalError as exc:
        first = str(exc.orig or exc).splitlines()[0]
        what = "is locked by another writer" if "locked" in first.lower() else "cannot be reached"
        raise FeedbackDatabaseError(
            f"feedback database {store.display_url} {what} ({first}); nothing was changed: try again when it is "
            f"free, or check serve.feedback_db in the project file"
        ) from None
    except SQLAlchemyError as exc:
        first = str(exc).splitlines()[0]
        raise FeedbackDatabaseError(
            f"feedback database {store.display_url}: {exc.__class__.__name__}: {first}; nothing was changed"
        ) from None
