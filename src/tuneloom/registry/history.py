"""The `production` and `canary` aliases over time: every promote and rollback, canary start and
canary rollback, each with its reason, and the rules for them.

Every change of the alias is kept as a registered-model tag `tuneloom.history.NNNNNN` holding one
JSON entry, so no single tag grows without bound.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel

from tuneloom.registry.errors import RegistryError
from tuneloom.registry.refs import PRODUCTION

HISTORY_PREFIX = "tuneloom.history."
_MAX_REASON = 1000


CANARY_ACTIONS = ("canary", "canary_rollback")  # moves of the canary alias; production stays where it is


class HistoryEntry(BaseModel):
    """One change of the `production` alias (promote, rollback) or of the `canary` alias (canary, canary_rollback)."""

    seq: int
    time: str  # ISO time, UTC
    action: Literal["promote", "rollback", "canary", "canary_rollback"]
    from_version: int | None
    to_version: int
    forced: bool = False
    reason: str | None = None


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def clean_reason(reason: str | None) -> str | None:
    """A reason as recorded: stripped, bounded, None when empty."""
    return (reason or "").strip()[:_MAX_REASON] or None


def production_of(model: Any, alias: str = PRODUCTION) -> int | None:
    """The version a registered model's `production` alias (or another alias) points at, or None."""
    version = (getattr(model, "aliases", None) or {}).get(alias)
    return int(version) if version is not None else None


def history_of(model: Any) -> list[HistoryEntry]:
    """A registered model's history entries, oldest first."""
    entries = []
    for key, value in (model.tags or {}).items():
        if key.startswith(HISTORY_PREFIX):
            entries.append(HistoryEntry(seq=int(key[len(HISTORY_PREFIX) :]), **json.loads(value)))
    return sorted(entries, key=lambda e: e.seq)


def next_entry(model: Any, **fields: Any) -> tuple[str, str, HistoryEntry]:
    """The entry that follows a model's history: (tag key, tag value, entry)."""
    seq = max((e.seq for e in history_of(model)), default=0) + 1
    entry = HistoryEntry(seq=seq, time=utc_now(), **fields)
    return f"{HISTORY_PREFIX}{seq:06d}", entry.model_dump_json(exclude={"seq"}), entry


def gate_refusal(name: str, version: int, tags: dict[str, str]) -> str | None:
    """Why a version may not be promoted without force (its gate failed or is missing), or None."""
    gate = tags.get("gate")
    if gate == "passed":
        return None
    if gate == "failed":
        failures = tags.get("gate_failures")
        why = f"failed its regression gate ({failures})" if failures else "failed its regression gate"
    else:
        why = "has no gate result (its run had no gate.json when it was registered)"
    return (
        f"{name} version {version} {why}; not promoted. To ship it anyway: "
        f'tuneloom models promote {name} {version} --force --reason "..."'
    )


def production_stack(entries: list[HistoryEntry]) -> list[int]:
    """Replay the history: a promote pushes its version, a rollback pops back to its target."""
    stack: list[int] = []
    for e in entries:
        if e.action in CANARY_ACTIONS:
            continue
        if e.action == "promote":
            stack.append(e.to_version)
        else:
            while stack and stack[-1] != e.to_version:
                stack.pop()
            if not stack:
                stack.append(e.to_version)
    return stack


def rollback_target(name: str, model: Any) -> tuple[int, int]:
    """(current production version, the version that held it before) of a registered model."""
    current = production_of(model)
    if current is None:
        raise RegistryError(f"model '{name}' has no production version to roll back")
    stack = production_stack(history_of(model))
    if stack and stack[-1] == current:
        stack.pop()
    if not stack:
        raise RegistryError(
            f"model '{name}' has no earlier production version to roll back to "
            f"(version {current} is the first one promoted); see `tuneloom models history {name}`"
        )
    return current, stack[-1]
