"""API keys: created and revoked with `tuneloom keys`, stored hashed in the workspace, scoped to models
and to the access tags of knowledge-base chunks they may see.

A key reads `tlk_<id>_<secret>`; only its id, a per-key random salt and sha256(salt + secret) are
stored (the secret is 32 random bytes, so a fast hash is enough), and the key is shown once. The
server re-reads the file when it changes, so a created or revoked key takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from tuneloom.atomic import write_json_atomic
from tuneloom.errors import TuneloomError

ALL_MODELS = "*"
ALL_TAGS = "*"
SCOPES = ("serve", "reviewer", "admin")  # serve: the /v1 API; reviewer: the web console; admin: both, and promoting


class KeyRecord(BaseModel):
    id: str
    name: str
    salt: str
    hash: str
    models: list[str]  # registered or served model names (without :version / @alias); "*" = every model
    created: str
    revoked: str | None = None
    tags: list[str] = [ALL_TAGS]  # access tags of knowledge-base chunks it may see; "*" = all; [] = untagged only
    scopes: list[str] = ["serve"]  # keys made before scopes existed serve the API only

    def has_scope(self, scope: str) -> bool:
        """Whether the key holds `scope`; admin holds every scope (the /v1 API and reviewing too)."""
        return scope in self.scopes or "admin" in self.scopes

    def allows(self, model_name: str) -> bool:
        return ALL_MODELS in self.models or model_name in self.models

    def allowed_tags(self) -> frozenset[str] | None:
        """The tags to filter retrieval by (untagged chunks are always visible); None = every tag."""
        return None if ALL_TAGS in self.tags else frozenset(self.tags)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


class KeyStore:
    """The key file (`<workspace>/serve/keys.json`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, KeyRecord] = {}

    def _load(self) -> dict[str, KeyRecord]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._keys = None, {}
                return self._keys
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                rows = json.loads(self.path.read_text(encoding="utf-8"))
                self._keys, self._stamp = {r["id"]: KeyRecord(**r) for r in rows}, stamp
            return self._keys

    def _save(self, keys: dict[str, KeyRecord]) -> None:
        write_json_atomic(self.path, [k.model_dump() for k in keys.values()])
        self.path.chmod(0o600)

    def create(
        self, models: list[str], name: str = "", tags: list[str] | None = None, scopes: list[str] | None = None
    ) -> tuple[KeyRecord, str]:
        """A new key for `models` seeing chunks with `tags` (None: every tag) with `scopes` (None: serve only);
        returns its record and the key itself (shown once, never stored)."""
        if not models:
            raise TuneloomError("a key needs at least one model: --model NAME (or --model '*' for every model)")
        if tags is not None and any(not t.strip() for t in tags):
            raise TuneloomError("an access tag cannot be empty: --tag NAME (or --public-only for untagged chunks only)")
        scopes = sorted(set(scopes or ["serve"]))
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise TuneloomError(f"--scope {unknown[0]!r} is not a scope; use {', '.join(SCOPES)}")
        keys = dict(self._load())
        key_id = secrets.token_hex(4)
        while key_id in keys:
            key_id = secrets.token_hex(4)
        secret, salt = secrets.token_urlsafe(32), secrets.token_hex(16)
        record = KeyRecord(
            id=key_id,
            name=name,
            salt=salt,
            hash=_digest(salt, secret),
            models=sorted(set(models)),
            tags=[ALL_TAGS] if tags is None else sorted(set(tags)),
            scopes=scopes,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        keys[key_id] = record
        self._save(keys)
        return record, f"tlk_{key_id}_{secret}"

    def revoke(self, key_id: str) -> KeyRecord:
        keys = dict(self._load())
        if key_id not in keys:
            raise TuneloomError(f"no key with id '{key_id}'; `tuneloom keys list` shows the ids")
        keys[key_id] = keys[key_id].model_copy(update={"revoked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self._save(keys)
        return keys[key_id]

    def list(self) -> list[KeyRecord]:
        return list(self._load().values())

    def verify(self, key: str) -> KeyRecord | None:
        """The active key record for a presented key, else None (constant-time comparison)."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "tlk":
            return None
        record = self._load().get(parts[1])
        if record is None or record.revoked is not None:
            return None
        return record if hmac.compare_digest(record.hash, _digest(record.salt, parts[2])) else None


def keys_path(workspace: Path) -> Path:
    return workspace / "serve" / "keys.json"
