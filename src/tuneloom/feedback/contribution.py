"""Accepted feedback becomes a dataset version of its own; `mark_used` records which model version used it.

    datasets/<task>/feedback-<version>/
      train.jsonl     rows to train on (the task's format, each with `lineage`)
      test.jsonl      the held-out slice (feedback.held_out), for evaluation only
      manifest.json   DatasetManifest, like every prepared dataset version
      feedback.json   FeedbackRecord: feedback ids, held-out ids, what the guards kept out

The guards run here, in one transaction with recording their verdicts, so a row the guards kept
out is counted once as duplicate, leaked or invalid, and no row is offered once it has been used.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tuneloom.artifacts import (
    DatasetManifest,
    FeedbackRecord,
    ManifestResult,
    SourceAccount,
    write_feedback_record,
    write_manifest,
)
from tuneloom.atomic import atomic_dir, write_jsonl_atomic
from tuneloom.config import Project, TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.feedback.guards import FEEDBACK_PREFIX, GuardSets, clean_row, guard_sets, pipeline
from tuneloom.feedback.models import FeedbackContribution
from tuneloom.feedback.queue import registry_name
from tuneloom.feedback.store import ReviewRow, now, open_store, session
from tuneloom.tasks import kind_of
from tuneloom.workspace import Workspace

KEPT_OUT = ("duplicate", "leaked", "invalid")


def _rank(task: TaskConfig, feedback_id: int) -> str:
    """A stable pseudo-random order, so the held-out slice does not depend on when feedback arrived."""
    return hashlib.sha256(f"{task.name}:{feedback_id}".encode()).hexdigest()


def _held_out_ids(task: TaskConfig, candidates: list[ReviewRow]) -> set[int]:
    """feedback.held_out of the candidates (at least one when there are two or more and the share is above 0)."""
    share = task.feedback.held_out
    if share <= 0 or len(candidates) < 2:
        return set()
    k = max(1, round(len(candidates) * share))
    return {r.feedback_id for r in sorted(candidates, key=lambda r: _rank(task, r.feedback_id))[:k]}


def _index_used(s: Any, task: TaskConfig, sets: GuardSets) -> None:
    """Feedback a registered version already used: trained rows count as training data, held-out ones as a test set."""
    used = s.scalars(select(ReviewRow).where(ReviewRow.task == task.name, ReviewRow.used_version.is_not(None)))
    for r in used:
        for i, row in enumerate(r.rows or []):
            where = f"feedback {r.feedback_id} (used by {r.used_version})"
            (sets.add_test if r.held_out else sets.add_train)(f"{where} row {i}", row)


def _guard(task: TaskConfig, r: ReviewRow, sets: GuardSets, cleaner: Any, redactor: Any) -> list[dict[str, Any]]:
    """The item's cleaned rows, or [] after recording why the guards kept it out."""
    rows = [copy.deepcopy(row) for row in r.rows or []]
    verdict: tuple[str, dict[str, Any]] | None = None
    for row in rows:
        reason = clean_row(task, row, cleaner, redactor)
        verdict = ("invalid", {"reason": reason}) if reason else sets.verdict(row)
        if verdict is not None:
            break
    r.guard, r.guard_detail = (verdict[0], verdict[1]) if verdict else ("passed", None)
    if verdict is not None or not rows:
        return []
    if r.held_out:
        for i, row in enumerate(rows):
            sets.add_test(f"held-out feedback {r.feedback_id} row {i}", row)
    return rows


def _version(task: TaskConfig, train: list[dict[str, Any]], test: list[dict[str, Any]]) -> str:
    payload = json.dumps({"task": task.name, "type": task.type, "train": train, "test": test}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _write(folder: Path, task: TaskConfig, out: FeedbackContribution, lineage: list[dict[str, Any]]) -> None:
    kind = kind_of(task.type)
    splits = {"train": out.rows, "test": out.held_out}
    read = len(out.feedback_ids) + len(out.held_out_ids) + sum(len(v) for v in out.excluded.values())
    account = SourceAccount(
        path=f"feedback:{task.name}",
        sha256=out.version,
        read=read,
        kept=len(out.feedback_ids) + len(out.held_out_ids),
        rejected={"invalid": len(out.excluded.get("invalid", [])), "leaked": len(out.excluded.get("leaked", []))},
        duplicates=len(out.excluded.get("duplicate", [])),
    )
    rows_all = out.rows + out.held_out
    result = ManifestResult(
        task=task.name,
        version=out.version,
        path=str(folder),
        counts={k: len(v) for k, v in splits.items()},
        labels=kind.labels(rows_all) if rows_all else None,
        sources=[account],
        warnings=[] if out.held_out else ["no held-out feedback rows: improvement on user-flagged answers cannot be measured"],
    )
    manifest = DatasetManifest(
        result=result,
        task_type=task.type,
        data_config=task.data.model_dump(mode="json"),
        model=task.model,
        label_counts=kind.label_counts(splits),
    )
    record = FeedbackRecord(
        task=task.name,
        version=out.version,
        format=out.format,
        feedback_ids=out.feedback_ids,
        held_out_ids=out.held_out_ids,
        excluded=out.excluded,
        lineage=lineage,
    )
    with atomic_dir(folder) as tmp:
        write_jsonl_atomic(tmp / "train.jsonl", out.rows)
        write_jsonl_atomic(tmp / "test.jsonl", out.held_out)
        write_manifest(tmp, manifest)
        write_feedback_record(tmp, record)


def contribution(project: Project, task_name: str | None = None) -> FeedbackContribution:
    """Accepted and edited feedback not used yet, through cleaning, redaction, duplicate and leakage guards.

    Returns the training rows and the held-out slice with their feedback ids, written as the dataset
    version `datasets/<task>/feedback-<hash>` (reused when the same rows were written before; not
    written when there are no rows at all).
    """
    task = project.config.task(task_name)
    sets = guard_sets(project, task)  # file reading and hashing, before taking the database's write lock
    store = open_store(project)
    try:
        with session(store, write=True) as s:
            candidates = list(
                s.scalars(
                    select(ReviewRow)
                    .where(
                        ReviewRow.task == task.name, ReviewRow.state.in_(("accepted", "edited")), ReviewRow.used_version.is_(None)
                    )
                    .order_by(ReviewRow.feedback_id)
                )
            )
            candidates = [r for r in candidates if r.guard not in KEPT_OUT]
            out, lineage = _contribute(s, project, task, candidates, sets)
    finally:
        store.close()
    folder = Path(out.path)
    if out.empty:
        return out  # nothing new to learn from: no folder is written
    if (folder / "feedback.json").is_file():
        return out.model_copy(update={"reused": True})
    _write(folder, task, out, lineage)
    return out


def _contribute(
    s: Any, project: Project, task: TaskConfig, candidates: list[ReviewRow], sets: GuardSets
) -> tuple[FeedbackContribution, list[dict[str, Any]]]:
    _index_used(s, task, sets)
    cleaner, redactor = pipeline(task)
    held = _held_out_ids(task, candidates)
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    ids: dict[str, list[int]] = {"train": [], "test": []}
    excluded: dict[str, list[int]] = {}
    for r in sorted(candidates, key=lambda r: (r.feedback_id not in held, r.feedback_id)):  # held-out first
        r.held_out = r.feedback_id in held
        rows = _guard(task, r, sets, cleaner, redactor)
        if r.guard in KEPT_OUT:
            excluded.setdefault(r.guard, []).append(r.feedback_id)
            continue
        (test if r.held_out else train).extend(rows)
        ids["test" if r.held_out else "train"].append(r.feedback_id)
    version = _version(task, train, test)
    formats = sorted({r.format for r in candidates if r.guard == "passed"})
    out = FeedbackContribution(
        task=task.name,
        version=version,
        path=str(Workspace(project.workspace).dataset_dir(task.name, FEEDBACK_PREFIX + version)),
        format="+".join(formats) or "none",
        rows=train,
        feedback_ids=ids["train"],
        held_out=test,
        held_out_ids=ids["test"],
        excluded=excluded,
    )
    return out, [row["lineage"] for row in train + test]


def mark_used(project: Project, task_name: str | None, feedback_ids: list[int], model_version: str) -> int:
    """Record that `model_version` (name:N, registered) used these feedback items; all or nothing.

    Call it only after the version is registered. Marking the same ids for the same version again
    is a no-op; ids used by another version, unknown, not accepted or kept out by the guards raise.
    """
    task = project.config.task(task_name)
    name = registry_name(task)
    if not model_version.startswith(f"{name}:") or not model_version.partition(":")[2]:
        raise TuneloomError(
            f"model_version must be '{name}:<version>' (the registered version that used the feedback), got '{model_version}'"
        )
    store = open_store(project)
    try:
        with session(store, write=True) as s:
            found = {
                r.feedback_id: r
                for r in s.scalars(select(ReviewRow).where(ReviewRow.task == task.name, ReviewRow.feedback_id.in_(feedback_ids)))
            }
            _check_usable(task, feedback_ids, found, model_version)
            fresh = [r for r in found.values() if r.used_version is None]
            for r in fresh:
                r.used_version, r.used = model_version, now()
            return len(fresh)
    finally:
        store.close()


def _check_usable(task: TaskConfig, ids: list[int], found: dict[int, ReviewRow], version: str) -> None:
    problems = []
    for fid in ids:
        r = found.get(fid)
        if r is None:
            problems.append(f"{fid}: not in the review queue of task '{task.name}'")
        elif r.used_version not in (None, version):
            problems.append(f"{fid}: already used by {r.used_version}")
        elif r.state not in ("accepted", "edited") or r.guard != "passed":
            problems.append(
                f"{fid}: {r.state}, guards {r.guard or 'not run'} (only accepted rows that passed the guards can be used)"
            )
    if problems:
        raise TuneloomError("cannot mark feedback used; nothing was changed:\n  " + "\n  ".join(problems))
