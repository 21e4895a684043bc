"""Console logins: an API key with the admin or reviewer scope opens a server-side session.

The browser holds only a random 256-bit session token in an HttpOnly, SameSite=Strict cookie. The
session (key id, role, expiry) is a row of a small SQLite table in the workspace
(`console/sessions.db`, owner-only), keyed by sha256 of the token, so a console restart keeps everyone
logged in while the file never holds a usable token. Every request re-checks the key, so a revoked key
ends its sessions at once. Every state-changing form carries the session's CSRF token (derived from
the session token, never stored; or sent as the X-CSRF-Token header) and is refused without it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, String, create_engine, delete, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm import Session as DbSession

from tuneloom.errors import TuneloomError
from tuneloom.serve.auth import KeyRecord, KeyStore
from tuneloom.serve.feedback import private_file

COOKIE = "tuneloom_console"
LOGIN_COOKIE = "tuneloom_console_login"  # the login form's CSRF token (no session exists yet)
IDLE_S = 8 * 3600.0
KEEP_ENDED_S = 7 * 24 * 3600.0  # an expired row is kept a week, so its cookie gets "expired", not "unknown"
TOUCH_S = 60.0  # the sliding expiry is written at most once a minute per session


class _Base(DeclarativeBase):
    pass


class SessionRow(_Base):
    __tablename__ = "tuneloom_console_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    key_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # admin | reviewer
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)  # the key's access tags; None: every tag
    created: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float, index=True)


@dataclass
class Session:
    id: str  # the cookie's token (only ever in memory and in the browser)
    key_id: str
    key_name: str
    role: str  # admin | reviewer
    allowed_tags: frozenset[str] | None = None  # knowledge-base access tags of the key (None: every tag)
    expires: float = 0.0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def csrf(self) -> str:
        """The session's CSRF token: derived from its token, so it survives restarts without being stored."""
        return hmac.new(self.id.encode(), b"tuneloom-console-csrf", hashlib.sha256).hexdigest()


def role_of(record: KeyRecord) -> str | None:
    """admin, reviewer, or None for a key that may not open the console."""
    if record.has_scope("admin"):
        return "admin"
    return "reviewer" if record.has_scope("reviewer") else None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sessions_path(workspace: Path) -> Path:
    return workspace / "console" / "sessions.db"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")  # two consoles on one workspace wait for each other's writes
    cursor.close()


class SessionStore:
    """Open sessions in `<workspace>/console/sessions.db`; safe from several threads and processes."""

    def __init__(self, keys: KeyStore, path: Path, idle_s: float = IDLE_S) -> None:
        self.keys = keys
        self.idle_s = idle_s
        self.path = path
        try:
            private_file(path)
            self.engine = create_engine(f"sqlite:///{path}")
            event.listen(self.engine, "connect", _sqlite_pragmas)
            _Base.metadata.create_all(self.engine)
            private_file(path)  # the -wal and -shm files SQLite just made
        except (OSError, SQLAlchemyError) as exc:
            raise TuneloomError(
                f"console sessions {path}: cannot be opened ({str(exc).splitlines()[0]}); check the workspace "
                f"folder's permissions, or delete the file (everyone logs in again)"
            ) from None

    def login(self, key: str) -> Session | None:
        """A new session for a valid admin/reviewer key, else None."""
        record = self.keys.verify(key.strip())
        role = role_of(record) if record is not None else None
        if record is None or role is None:
            return None
        now = time.time()
        tags = record.allowed_tags()
        session = Session(secrets.token_urlsafe(32), record.id, record.name, role, tags, now + self.idle_s)
        row = SessionRow(
            token_hash=_hash(session.id),
            key_id=record.id,
            key_name=record.name,
            role=role,
            tags=None if tags is None else sorted(tags),
            created=now,
            expires=session.expires,
        )
        with DbSession(self.engine) as db, db.begin():
            db.execute(delete(SessionRow).where(SessionRow.expires < now - KEEP_ENDED_S))
            db.add(row)
        return session

    def check(self, token: str | None) -> tuple[Session | None, str]:
        """(the live session, "") for a cookie value, else (None, why): "missing", "unknown", "expired" or "revoked"."""
        if not token:
            return None, "missing"
        now = time.time()
        with DbSession(self.engine, expire_on_commit=False) as db, db.begin():
            row = db.get(SessionRow, _hash(token))
            if row is None:
                return None, "unknown"
            if row.expires < now:
                return None, "expired"
            if not self._key_active(row.key_id):
                db.delete(row)
                return None, "revoked"
            if row.expires - now < self.idle_s - TOUCH_S:
                row.expires = now + self.idle_s
            tags = None if row.tags is None else frozenset(row.tags)
            return Session(token, row.key_id, row.key_name, row.role, tags, row.expires), ""

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie value; None when unknown, expired or its key was revoked."""
        return self.check(token)[0]

    def _key_active(self, key_id: str) -> bool:
        record = next((k for k in self.keys.list() if k.id == key_id), None)
        return record is not None and record.revoked is None and role_of(record) is not None

    def logout(self, token: str) -> None:
        with DbSession(self.engine) as db, db.begin():
            db.execute(delete(SessionRow).where(SessionRow.token_hash == _hash(token)))

    def close(self) -> None:
        self.engine.dispose()


def csrf_ok(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())
