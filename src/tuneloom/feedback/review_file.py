"""Reviewing in a spreadsheet: export the queue to CSV with a status column, import the decisions back.

The file is UTF-8 with a byte-order mark (spreadsheets then read the encoding right). A reviewer
changes `status` (pending, accepted, edited, rejected), and `correction` for an edit (changing the
correction of an accepted row makes it an edit), and may write a `note`. Import checks every line
first and changes nothing when one is wrong; each message names the line and the column. Cells a
spreadsheet would run as a formula (starting with = + - @) are written with a leading apostrophe,
which import removes again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from tuneloom.atomic import write_text_atomic
from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.feedback.models import QueueFilter, QueueItem
from tuneloom.feedback.queue import Decision, decide, list_queue
from tuneloom.feedback.store import STATES

COLUMNS = (
    "item",
    "status",
    "correction",
    "note",
    "prompt",
    "answer",
    "rating",
    "tags",
    "flags",
    "reason",
    "format",
    "version",
    "feedback",
    "reviewer",
)
REQUIRED = ("item", "status", "correction")
_FORMULA = ("=", "+", "-", "@")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _uncell(text: str | None) -> str:
    text = text or ""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA) else text


def _line(item: QueueItem) -> list[str]:
    flags = "; ".join(f"{f['kind']} of {f.get('of')} ({f.get('similarity')})" for f in item.flags)
    values = (
        item.id,
        item.state,
        item.correction,
        item.note,
        item.prompt,
        item.answer,
        item.rating,
        ", ".join(item.tags),
        flags,
        item.reason,
        item.format,
        item.model_version,
        item.feedback_id,
        item.reviewer,
    )
    return [_cell(v) for v in values]


def export_review(project: Project, task_name: str | None, path: Path, flt: QueueFilter | None = None) -> int:
    """Write the queue items matching `flt` (default: pending ones) to `path`; returns how many."""
    items = list_queue(project, task_name, flt or QueueFilter(states=["pending"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(_line(i) for i in items)
    write_text_atomic(path, "\ufeff" + buffer.getvalue())
    return len(items)


def _decision(path: Path, line: int, row: dict[str, str], current: dict[int, QueueItem]) -> tuple[Decision | None, str | None]:
    where = f"{path.name} line {line}"
    raw = (row.get("item") or "").strip()
    if not raw.isdigit():
        return None, f"{where}, column item: '{raw}' is not a queue item number; keep the exported value"
    status = (row.get("status") or "").strip().lower()
    if status not in STATES:
        return None, f"{where}, column status: '{status}' is not one of {', '.join(STATES)}"
    item = current.get(int(raw))
    correction = _uncell(row.get("correction"))
    if status == "accepted" and item is not None and correction.strip() and correction != (item.correction or ""):
        status = "edited"  # a changed correction on an accepted row is an edit
    note = _uncell(row.get("note")) or None
    return Decision(item=int(raw), state=status, correction=correction or None, note=note, where=where), None


def read_review(path: Path, current: dict[int, QueueItem]) -> list[Decision]:
    """The decisions in a review file; TuneloomError listing every problem (line and column) otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise TuneloomError(f"{path}: cannot read the review file ({exc}); export it again with --export") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise TuneloomError(f"{path} line 1: missing column(s) {', '.join(missing)}; keep the header the export wrote")
    decisions, problems, seen, last = [], [], set(), 1
    for row in reader:
        decision, problem = _decision(path, last + 1, row, current)  # the line the record starts on
        last = reader.line_num
        if decision is not None and decision.item in seen:
            problem = f"{decision.where}, column item: item {decision.item} appears twice"
        if problem:
            problems.append(problem)
        elif decision is not None:
            seen.add(decision.item)
            decisions.append(decision)
    if problems:
        raise TuneloomError("nothing was imported:\n  " + "\n  ".join(problems[:20]))
    return decisions


def import_review(project: Project, task_name: str | None, path: Path, reviewer: str) -> dict[str, int]:
    """Apply a reviewed file: all of its lines or none; returns decisions per state."""
    current = {i.id: i for i in list_queue(project, task_name)}
    return decide(project, task_name, read_review(path, current), reviewer)
