"""The per-row stages (format + clean, quality filters, dedup key and MinHash, redaction), run in worker processes.

Redaction runs here too, on every row, for speed; rows found to be duplicates afterwards simply
drop their result, so the outcome is the same as deduplicating first and redacting after.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloom.config import DataConfig
from tuneloom.data.clean import Cleaner, dedup_key, normalize_text
from tuneloom.data.dedup import signature
from tuneloom.data.format import dedup_texts
from tuneloom.data.redact import Redactor, redact_example
from tuneloom.tasks import kind_of

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
INLINE_BELOW = 20_000  # rows; fewer are not worth starting worker processes for


@dataclass
class RowResult:
    location: str
    example: dict[str, Any] | None = None
    reason: str | None = None
    key: str = ""
    signature: np.ndarray | None = None
    redacted: dict[str, int] | None = None
    originals: list[dict[str, str]] | None = None


@dataclass
class RowStage:
    """Everything a worker needs to turn records into examples (picklable)."""

    task_type: str
    data: DataConfig
    person_finder: Callable[[str], list[tuple[int, int]]] | None = None

    def __post_init__(self) -> None:
        self.cleaner = Cleaner(self.data.clean)
        self.redactor = Redactor(list(self.data.redact.types), self.person_finder) if self.data.redact.enabled else None
        self.required = self.data.columns.required()
        self.text_columns = self.data.columns.text_columns()
        self.raw_limit = max(10 * self.data.max_chars, 1 << 20)

    def row(self, location: str, record: dict[str, Any]) -> RowResult:
        if any(c not in record for c in self.required):
            return RowResult(location, reason="missing_columns")
        if sum(len(v) for v in record.values() if isinstance(v, str)) > self.raw_limit:
            return RowResult(location, reason="too_long")  # before cleaning: a 50 MB cell is not worth normalising
        if any(isinstance(record[c], (list, dict)) for c in self.text_columns):
            return RowResult(location, reason="not_text")  # a JSON list or object where text belongs: not its repr
        example, reason = kind_of(self.task_type).build_example(self.data, record, self.cleaner)
        if example is None:
            return RowResult(location, reason=reason)
        texts = dedup_texts(example)
        reason = self.cleaner.problem("\n".join(texts))
        if reason:
            return RowResult(location, reason=reason)
        cols = self.data.columns
        if cols.split:
            value = SPLIT_NAMES.get(normalize_text(record[cols.split]).casefold())
            if value is None:
                return RowResult(location, reason="invalid_split_value")
            example["split"] = value
        if cols.group:
            example["group"] = normalize_text(record[cols.group])
        if cols.slice:
            example["slice"] = normalize_text(record[cols.slice]) or "(empty)"
        key = dedup_key(*texts)
        sig = signature(key, self.data.dedup) if self.data.dedup.near else None
        result = RowResult(location, example=example, key=key, signature=sig)
        if self.redactor is not None:
            counts, pairs = redact_example(example, self.redactor)
            result.redacted, result.originals = dict(counts), pairs
        return result

    def chunk(self, rows: list[tuple[str, dict[str, Any]]]) -> list[RowResult]:
        return [self.row(loc, rec) for loc, rec in rows]


def run_rows(stage: RowStage, rows: list[tuple[str, dict[str, Any]]], workers: int | None) -> list[RowResult]:
    """Results in input order; uses `workers` processes (default: every CPU) for large inputs."""
    n = workers or os.cpu_count() or 1
    if n == 1 or len(rows) < INLINE_BELOW or stage.person_finder is not None:
        return stage.chunk(rows)
    size = max(1000, len(rows) // (n * 8))
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    # fork on Linux: no re-import of the caller's script (spawn needs an `if __name__ == "__main__"`
    # guard there) and a fast start; the workers run only Python, regex and numpy code, never the
    # torch or tokenizer threads a parent may hold. Elsewhere fork is unsafe or missing: spawn.
    method = "fork" if sys.platform == "linux" else "spawn"
    with multiprocessing.get_context(method).Pool(n) as pool:
        parts = pool.map(stage.chunk, chunks)
    return [r for part in parts for r in part]
