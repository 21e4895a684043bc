"""Every answer and its feedback, in a SQL database through SQLAlchemy.

SQLite in the workspace by default (WAL journal, synchronous writes), PostgreSQL or any other
SQLAlchemy URL by configuration. Each write commits before the server answers, so a completion
id the client holds is in the database even if the server is killed the next moment.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tuneloom.errors import TuneloomError


class Base(DeclarativeBase):
    pass


class CompletionRow(Base):
    __tablename__ = "tuneloom_completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    endpoint: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))  # as requested
    served: Mapped[str] = mapped_column(String(200))  # what answered, e.g. acme-support:3
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    request: Mapped[Any] = mapped_column(JSON, nullable=True)  # None when store_prompts is off
    response: Mapped[Any] = mapped_column(JSON, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)


class FeedbackRow(Base):
    __tablename__ = "tuneloom_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    completion_id: Mapped[str] = mapped_column(ForeignKey("tuneloom_completions.id"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    rating: Mapped[int] = mapped_column(Integer)  # 1..5; thumbs: up = 5, down = 1
    rating_kind: Mapped[str] = mapped_column(String(8))  # thumbs | scale
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[Any] = mapped_column(JSON, default=list)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _redact_url(url: str) -> str:
    return re.sub(r"(?<=://)[^/@]*@", "", url)


class FeedbackStore:
    """Completions and feedback; safe to call from several threads (one session per call)."""

    def __init__(self, url: str) -> None:
        self.display_url = _redact_url(url)
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise TuneloomError(f"serve.feedback_db {self.display_url}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise TuneloomError(
                f"feedback database {self.display_url} is not usable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from None

    @classmethod
    def for_workspace(cls, workspace: Path, url: str | None) -> FeedbackStore:
        if url is None:
            path = workspace / "serve" / "feedback.db"
            private_file(path)
            url = f"sqlite:///{path}"
        return cls(url)

    def record_completion(self, **fields: Any) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(CompletionRow(created=_now(), **fields))

    def record_feedback(
        self, completion_id: str, rating: str | int, correction: str | None, tags: list[str], key_id: str | None
    ) -> int | None:
        """The feedback row's id, or None when the completion id is unknown."""
        found = self.record_feedback_once(completion_id, rating, correction, tags, key_id)
        return None if found is None else found[0]

    def record_feedback_once(
        self, completion_id: str, rating: str | int, correction: str | None, tags: list[str], key_id: str | None
    ) -> tuple[int, bool] | None:
        """(feedback id, whether it was stored just now), or None when the completion id is unknown.

        The same feedback sent again (same answer, key, rating, correction and tags: a client retry)
        is not stored twice: the first row's id comes back with False.
        """
        kind, value = ("thumbs", 5 if rating == "up" else 1) if isinstance(rating, str) else ("scale", rating)
        with Session(self.engine) as session, session.begin():
            if session.get(CompletionRow, completion_id) is None:
                return None
            same = select(FeedbackRow).where(
                FeedbackRow.completion_id == completion_id,
                FeedbackRow.rating == value,
                FeedbackRow.rating_kind == kind,
                FeedbackRow.key_id.is_(None) if key_id is None else FeedbackRow.key_id == key_id,
                FeedbackRow.correction.is_(None) if correction is None else FeedbackRow.correction == correction,
            )
            for earlier in session.scalars(same):
                if list(earlier.tags or []) == list(tags):
                    return earlier.id, False
            row = FeedbackRow(
                completion_id=completion_id,
                created=_now(),
                rating=value,
                rating_kind=kind,
                correction=correction,
                tags=tags,
                key_id=key_id,
            )
            session.add(row)
            session.flush()
            return row.id, True

    def completion(self, completion_id: str) -> CompletionRow | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(CompletionRow, completion_id)

    def feedback_for(self, completion_id: str) -> list[FeedbackRow]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(FeedbackRow).where(FeedbackRow.completion_id == completion_id)))

    def close(self) -> None:
        self.engine.dispose()


def private_file(path: Path) -> None:
    """Create `path` (and its folder) readable by the owner only; SQLite gives its -wal and -shm files
    the database's mode. Files that exist already are made private too: they hold prompts and answers."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed answer survives a kill and a power cut
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
