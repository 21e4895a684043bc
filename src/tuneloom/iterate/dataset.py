"""The next dataset version: the task's prepared data plus accepted feedback rows, weighted.

The new version keeps the task's validation and test splits as they are (the test split is the
golden set every version is compared on) and adds the feedback rows to the training split, each
repeated by `iterate.feedback_weight` or sampled to make `iterate.feedback_share` of it. The held-out
feedback rows become a dataset of their own (`feedback-holdout/`, a test split only), so the new
version can be scored on what users flagged. Each feedback row's lineage goes to `feedback.jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from tuneloom.artifacts import DatasetManifest, ManifestResult, SourceAccount, read_manifest, write_manifest
from tuneloom.atomic import atomic_dir, write_jsonl_atomic
from tuneloom.config import IterateConfig, TaskConfig
from tuneloom.data import load_split
from tuneloom.errors import DataError
from tuneloom.tasks import kind_of
from tuneloom.workspace import Workspace

LINEAGE = "lineage"  # the key feedback rows carry their origin under; not a training column
HOLDOUT = "feedback-holdout"


def weighted_rows(rows: list[dict[str, Any]], n_task: int, settings: IterateConfig) -> list[dict[str, Any]]:
    """Feedback rows repeated by `feedback_weight`, or repeated/sampled to make `feedback_share` of the split."""
    if not rows:
        return []
    if settings.feedback_share is not None:
        target = round(settings.feedback_share * n_task / (1 - settings.feedback_share))
    else:
        target = round(settings.feedback_weight * len(rows))
    target = max(target, 1)
    rng = random.Random(settings.seed)
    return rows * (target // len(rows)) + rng.sample(rows, target % len(rows))


def next_version_id(parent: str, contribution: str, settings: IterateConfig) -> str:
    """The new version's name: its parent's, then a hash of the feedback and the weighting."""
    key = json.dumps([parent, contribution, settings.feedback_weight, settings.feedback_share, settings.seed])
    return f"{parent}+fb-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _training_row(row: dict[str, Any], feedback_id: int) -> dict[str, Any]:
    """A feedback row as a split row: an `id` and `source` like prepared rows (evaluation keys on them), no lineage."""
    out = {k: v for k, v in row.items() if k != LINEAGE}
    out.setdefault("id", f"feedback-{feedback_id}")
    out.setdefault("source", "feedback")
    return out


def _check_labels(task: TaskConfig, parent: DatasetManifest, rows: list[dict[str, Any]]) -> None:
    """Feedback rows may only use the labels the task already has (a new label needs new data preparation)."""
    labels = kind_of(task.type).labels(rows)
    unknown = sorted(set(labels or []) - set(parent.labels))
    if labels is not None and unknown:
        raise DataError(
            f"feedback rows for task '{task.name}' use labels the task's data does not have: {unknown}; "
            f"known: {parent.labels}. Reject or edit those rows in review, or add the labels to the task's data"
        )


def _manifest(
    parent: DatasetManifest, folder: Path, version: str, splits: dict[str, list[dict[str, Any]]], source: SourceAccount
) -> DatasetManifest:
    result = parent.result.model_dump()
    result.update(
        version=version,
        path=str(folder),
        counts={s: len(v) for s, v in splits.items()},
        sources=[*parent.result.sources, source],
        warnings=[*parent.result.warnings, f"train split extends dataset {parent.result.version} with feedback rows"],
    )
    label_counts = kind_of(parent.task_type).label_counts(splits)
    # token statistics of the parent no longer cover the training split: training then plans for max_length
    return parent.model_copy(update={"result": ManifestResult(**result), "tokens": None, "label_counts": label_counts})


def _source(contribution: Any, trained: int) -> SourceAccount:
    """The feedback contribution as one more source of the dataset, with what the guards kept out."""
    excluded = {k: len(v) for k, v in (contribution.excluded or {}).items()}
    duplicates = excluded.pop("duplicate", 0)
    return SourceAccount(
        path=str(contribution.path),
        sha256=contribution.version,
        read=trained + duplicates + sum(excluded.values()),
        kept=trained,
        rejected=excluded,
        duplicates=duplicates,
    )


def build_next_dataset(
    workspace: Path, task: TaskConfig, parent_dir: Path, contribution: Any, settings: IterateConfig
) -> tuple[Path, Path | None]:
    """(new dataset folder, held-out feedback folder or None); reused when it exists already."""
    parent = read_manifest(parent_dir)
    version = next_version_id(parent.result.version, contribution.version, settings)
    folder = Workspace(workspace).dataset_dir(task.name, version)
    holdout = folder / HOLDOUT if contribution.held_out else None
    if (folder / "manifest.json").is_file():
        return folder, holdout
    _check_labels(task, parent, [*contribution.rows, *contribution.held_out])
    splits = {s: load_split(parent_dir, s) for s in parent.result.counts}
    rows = [_training_row(r, i) for r, i in zip(contribution.rows, contribution.feedback_ids, strict=True)]
    feedback = weighted_rows(rows, len(splits["train"]), settings)
    splits["train"] = [*splits["train"], *feedback]
    lineage = [{"feedback_id": i, LINEAGE: r.get(LINEAGE)} for i, r in zip(contribution.feedback_ids, contribution.rows)]
    with atomic_dir(folder) as tmp:
        for split, rows in splits.items():
            write_jsonl_atomic(tmp / f"{split}.jsonl", rows)
        write_jsonl_atomic(tmp / "feedback.jsonl", lineage)
        write_manifest(tmp, _manifest(parent, folder, version, splits, _source(contribution, len(contribution.rows))))
        if contribution.held_out:
            held = {"test": [_training_row(r, i) for r, i in zip(contribution.held_out, contribution.held_out_ids, strict=True)]}
            source = _source(contribution, 0).model_copy(update={"read": len(held["test"]), "kept": len(held["test"])})
            (tmp / HOLDOUT).mkdir(mode=0o700)
            write_jsonl_atomic(tmp / HOLDOUT / "test.jsonl", held["test"])
            write_manifest(tmp / HOLDOUT, _manifest(parent, folder / HOLDOUT, f"{version}-holdout", held, source))
    return folder, holdout
