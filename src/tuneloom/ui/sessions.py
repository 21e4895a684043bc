"""Console logins: an API key with the admin or reviewer scope opens a server-side session.

The browser holds only a random session id in an HttpOnly, SameSite=Strict cookie; the session (key
id, scope, CSRF token, expiry) stays in the console's memory, and every request re-checks the key,
so a revoked key ends its sessions at once. Every state-changing form carries the session's CSRF
token (or sends it as the X-CSRF-Token header) and is refused without it.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from tuneloom.serve.auth import KeyRecord, KeyStore

COOKIE = "tuneloom_console"
LOGIN_COOKIE = "tuneloom_console_login"  # the login form's CSRF token (no session exists yet)
IDLE_S = 8 * 3600.0


@dataclass
class Session:
    id: str
    key_id: str
    key_name: str
    role: str  # admin | reviewer
    allowed_tags: frozenset[str] | None = None  # knowledge-base access tags of the key (None: every tag)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = 0.0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def role_of(record: KeyRecord) -> str | None:
    """admin, reviewer, or None for a key that may not open the console."""
    if record.has_scope("admin"):
        return "admin"
    return "reviewer" if record.has_scope("reviewer") else None


class SessionStore:
    """Open sessions; ids are 256-bit random and compared by dictionary lookup of the exact value."""

    def __init__(self, keys: KeyStore, idle_s: float = IDLE_S) -> None:
        self.keys = keys
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def login(self, key: str) -> Session | None:
        """A new session for a valid admin/reviewer key, else None."""
        record = self.keys.verify(key.strip())
        role = role_of(record) if record is not None else None
        if record is None or role is None:
            return None
        session = Session(
            id=secrets.token_urlsafe(32),
            key_id=record.id,
            key_name=record.name,
            role=role,
            allowed_tags=record.allowed_tags(),
        )
        session.expires = time.time() + self.idle_s
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value; None when unknown, expired or its key was revoked."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires < time.time() or not self._key_active(session.key_id):
                del self._sessions[session_id]
                return None
            session.expires = time.time() + self.idle_s
            return session

    def _key_active(self, key_id: str) -> bool:
        record = next((k for k in self.keys.list() if k.id == key_id), None)
        return record is not None and record.revoked is None and role_of(record) is not None

    def logout(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


def csrf_ok(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())
