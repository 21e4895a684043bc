"""Guards on feedback rows: the data pipeline's cleaning and redaction, exact and near duplicates, and leakage.

A row is *leaked* when its input (the user's turns, or the text to classify) is an exact or near
duplicate of the input of any test example of the task (every dataset version's test split, the
golden sets in `feedback.golden_sets`, and the held-out feedback); it is a *duplicate* when its
whole text repeats a training row or a feedback row already kept. Near means MinHash Jaccard over
word shingles (`tuneloom.data.dedup`) at `feedback.leak_threshold` (leaks) or data.dedup.threshold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloom.artifacts import read_manifest
from tuneloom.atomic import read_jsonl
from tuneloom.config import DedupConfig, Project, TaskConfig
from tuneloom.data.clean import Cleaner, dedup_key
from tuneloom.data.dedup import NearDuplicates, signature
from tuneloom.data.redact import Redactor, redactor_for
from tuneloom.errors import DataError
from tuneloom.workspace import Workspace

Row = dict[str, Any]
FEEDBACK_PREFIX = "feedback-"  # contribution folders among a task's dataset versions


def _turns(messages: list[dict[str, Any]], roles: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    return (m for m in messages if m.get("role") in roles)


def row_texts(row: Row) -> tuple[list[str], list[str]]:
    """(input texts, whole texts) of a row in any training format (sft, dpo, kto, label; prepared rows too)."""
    if "messages" in row:
        inputs = [m["content"] for m in _turns(row["messages"], ("user",))]
        return inputs, [m["content"] for m in _turns(row["messages"], ("user", "assistant"))]
    if "prompt" in row:
        inputs = [m["content"] for m in _turns(row["prompt"], ("user",))]
        answer = row.get("chosen") or row.get("completion") or []
        return inputs, [m["content"] for m in _turns(row["prompt"], ("user", "assistant"))] + [m["content"] for m in answer]
    return [row["text"]], [row["text"]]


def _slots(row: Row) -> list[tuple[dict[str, Any], str]]:
    """(holder, key) of each text a row holds, in every format; system messages stay as configured."""
    slots: list[tuple[dict[str, Any], str]] = [(row, "text")] if "text" in row else []
    for key in ("messages", "prompt", "chosen", "rejected", "completion"):
        slots.extend((msg, "content") for msg in row.get(key) or [] if msg.get("role") != "system")
    return slots


def clean_row(task: TaskConfig, row: Row, cleaner: Cleaner, redactor: Redactor | None) -> str | None:
    """Clean and redact a row's texts in place, as `tuneloom data prepare` does; a reject reason or None."""
    slots = _slots(row)
    for holder, key in slots:
        holder[key] = cleaner.text(holder[key])
    texts = [holder[key] for holder, key in slots]
    data = task.data
    if any(len(t) < max(data.min_chars, 1) for t in texts):
        return "empty_or_short_text"
    if sum(len(t) for t in texts) > data.max_chars:
        return "too_long"
    problem = cleaner.problem("\n".join(texts))
    if problem:
        return problem
    if redactor is not None:
        redacted, _, _ = redactor.example(texts)
        for (holder, key), text in zip(slots, redacted):
            holder[key] = text
    return None


@dataclass
class GuardSets:
    """The task's test inputs (leaks) and training texts (duplicates), indexed for exact and near matching."""

    dedup: DedupConfig
    leak: DedupConfig
    labels: set[str] | None
    test_keys: dict[str, str] = field(default_factory=dict)
    train_keys: dict[str, str] = field(default_factory=dict)
    test_near: NearDuplicates = field(init=False)
    train_near: NearDuplicates = field(init=False)
    test_count: int = 0

    def __post_init__(self) -> None:
        self.test_near = NearDuplicates(self.leak)
        self.train_near = NearDuplicates(self.dedup)

    def add_test(self, where: str, row: Row) -> None:
        key = dedup_key(*row_texts(row)[0])
        self.test_keys.setdefault(key, where)
        self.test_near.check(where, signature(key, self.leak))
        self.test_count += 1

    def add_train(self, where: str, row: Row) -> None:
        key = dedup_key(*row_texts(row)[1])
        self.train_keys.setdefault(key, where)
        if self.dedup.near:
            self.train_near.check(where, signature(key, self.dedup))

    def verdict(self, row: Row) -> tuple[str, dict[str, Any]] | None:
        """("leaked" | "duplicate" | "invalid", detail), or None; a row that passes joins the duplicate index."""
        label_problem = self._label_problem(row)
        if label_problem:
            return "invalid", {"reason": label_problem}
        inputs, whole = row_texts(row)
        found = _match(self.test_keys, self.test_near, dedup_key(*inputs), self.leak, near=True)
        if found:
            return "leaked", found
        key = dedup_key(*whole)
        found = (
            _match(self.train_keys, self.train_near, key, self.dedup, near=self.dedup.near)
            if self.dedup.exact or self.dedup.near
            else None
        )
        if found:
            return "duplicate", found
        self.add_train(f"feedback row {len(self.train_keys)}", row)
        return None

    def _label_problem(self, row: Row) -> str | None:
        if self.labels is None or not ("label" in row or "labels" in row):
            return None
        given = row.get("labels") or [row.get("label")]
        unknown = sorted(str(v) for v in given if v not in self.labels)
        return f"unknown_label: {', '.join(unknown)}" if unknown else None


def _match(keys: dict[str, str], index: NearDuplicates, key: str, cfg: DedupConfig, near: bool) -> dict[str, Any] | None:
    """The exact or nearest indexed row `key` matches (a query: nothing is added to the index)."""
    if key in keys:
        return {"of": keys[key], "similarity": 1.0}
    if not near:
        return None
    from datasketch import LeanMinHash

    sig = LeanMinHash(seed=1, hashvalues=signature(key, cfg), scheme=index.scheme)
    best = max(((other, sig.jaccard(index.kept[other])) for other in index.lsh.query(sig)), key=lambda t: t[1], default=None)
    if best is not None and best[1] >= cfg.threshold:
        return {"of": best[0], "similarity": round(float(best[1]), 3)}
    return None


def _split_rows(folder: Path, split: str) -> list[Row]:
    path = folder / f"{split}.jsonl"
    return read_jsonl(path) if path.is_file() else []


def golden_folders(project: Project, task: TaskConfig) -> list[Path]:
    """The folders of `feedback.golden_sets`, each checked to hold a test split."""
    out = []
    for raw in task.feedback.golden_sets:
        folder = (project.root / raw).resolve()
        if not (folder / "test.jsonl").is_file():
            raise DataError(
                f"tasks[{task.name}].feedback.golden_sets: {raw} has no test.jsonl; name a prepared dataset folder "
                f"(datasets/<task>/<version>) or remove the entry"
            )
        out.append(folder)
    return out


def guard_sets(project: Project, task: TaskConfig) -> GuardSets:
    """Index every test split and golden set of the task (leaks) and its latest training data (duplicates)."""
    ws = Workspace(project.workspace)
    root = ws.root / "datasets" / task.name
    leak = task.data.dedup.model_copy(update={"threshold": task.feedback.leak_threshold or task.data.dedup.threshold})
    # feedback contributions hold queue rows: the queue adds its own held-out rows (see `contribution`)
    versions = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(FEEDBACK_PREFIX)) if root.is_dir() else []
    latest = _latest(root)
    labels = set(read_manifest(latest).labels) if latest is not None and read_manifest(latest).labels else None
    sets = GuardSets(task.data.dedup, leak, labels)
    for folder in [*versions, *golden_folders(project, task)]:
        for i, row in enumerate(_split_rows(folder, "test")):
            sets.add_test(f"{folder.name}/test.jsonl:{i + 1}", row)
    if latest is not None:
        for split in ("train", "validation"):
            for i, row in enumerate(_split_rows(latest, split)):
                sets.add_train(f"{latest.name}/{split}.jsonl:{i + 1}", row)
    return sets


def _latest(root: Path) -> Path | None:
    marker = root / "LATEST"
    if not marker.is_file():
        return None
    folder = root / marker.read_text(encoding="utf-8").strip()
    return folder if (folder / "manifest.json").is_file() else None


def pipeline(task: TaskConfig) -> tuple[Cleaner, Redactor | None]:
    """The task's cleaner and redactor (the data section's settings, as `tuneloom data prepare` uses them)."""
    return Cleaner(task.data.clean), redactor_for(task.data.redact)
