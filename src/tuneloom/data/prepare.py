"""`prepare_dataset`: the sources named in a task become a versioned, validated dataset folder.

Every row read is accounted for: kept in a split, rejected (rejects.jsonl, with the reason),
or removed as an exact duplicate of an earlier row (also listed in rejects.jsonl).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from tuneloom.config import Project, TaskConfig
from tuneloom.data.clean import dedup_key, normalize_text
from tuneloom.data.ingest import read_source
from tuneloom.errors import DataError
from tuneloom.workspace import Workspace, atomic_dir, read_jsonl, write_json_atomic, write_jsonl_atomic

PREP_VERSION = 1  # bump when the output of the same inputs changes
SPLITS = ("train", "validation", "test")


class SourceAccount(BaseModel):
    path: str
    sha256: str
    read: int
    kept: int
    rejected: dict[str, int]
    duplicates: int


class PreparedDataset(BaseModel):
    task: str
    version: str
    path: str
    reused: bool
    counts: dict[str, int]
    labels: list[str] | None
    sources: list[SourceAccount]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _columns_present(path: Path, record: dict[str, Any], required: list[str]) -> None:
    missing = [c for c in required if c not in record]
    if missing:
        import difflib

        hints = []
        for col in missing:
            close = difflib.get_close_matches(col, list(record), n=1)
            hints.append(f"'{col}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise DataError(
            f"{path}: mapped column(s) {', '.join(hints)} not found; the file has columns {list(record)}. "
            f"Fix `data.columns` in the project file."
        )


def _to_example(task: TaskConfig, record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, str]:
    """(example, reject reason, dedup key) for one source record."""
    cols, data = task.data.columns, task.data
    if task.type == "chat_sft":
        prompt, response = normalize_text(record[cols.prompt]), normalize_text(record[cols.response])
        if len(prompt) < data.min_chars:
            return None, "empty_or_short_prompt", ""
        if len(response) < data.min_chars:
            return None, "empty_or_short_response", ""
        if len(prompt) + len(response) > data.max_chars:
            return None, "too_long", ""
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        if data.system_prompt:
            messages.insert(0, {"role": "system", "content": data.system_prompt.strip()})
        return {"messages": messages}, None, dedup_key(prompt, response)
    if task.type == "preference":
        return _preference_example(task, record)
    text_cols = [cols.text] if isinstance(cols.text, str) else list(cols.text or [])
    text = "\n\n".join(t for t in (normalize_text(record[c]) for c in text_cols) if t)
    if len(text) < data.min_chars:
        return None, "empty_or_short_text", ""
    if len(text) > data.max_chars:
        return None, "too_long", ""
    if task.type == "pretrain":
        return {"text": text}, None, dedup_key(text)
    if task.type == "ner":
        # spans index the text as written: a single text column is kept verbatim
        raw = str(record[text_cols[0]] or "") if len(text_cols) == 1 else text
        entities = _entities(record[cols.entities], raw)
        if entities is None:
            return None, "bad_entities", ""
        return {"text": raw, "entities": entities}, None, dedup_key(raw)
    if data.multi_label:
        labels = _label_list(record[cols.label], data.label_separator)
        if not labels:
            return None, "missing_label", ""
        return {"text": text, "labels": labels}, None, dedup_key(text)
    label = normalize_text(record[cols.label])
    if not label:
        return None, "missing_label", ""
    return {"text": text, "label": label}, None, dedup_key(text)


def _preference_example(task: TaskConfig, record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, str]:
    """TRL's conversational preference format: prompt messages, then one chosen and one rejected answer."""
    cols, data = task.data.columns, task.data
    prompt = normalize_text(record[cols.prompt])
    chosen, rejected = normalize_text(record[cols.chosen]), normalize_text(record[cols.rejected])
    if len(prompt) < data.min_chars:
        return None, "empty_or_short_prompt", ""
    if len(chosen) < data.min_chars or len(rejected) < data.min_chars:
        return None, "empty_or_short_response", ""
    if chosen == rejected:
        return None, "chosen_equals_rejected", ""
    if len(prompt) + len(chosen) + len(rejected) > data.max_chars:
        return None, "too_long", ""
    messages = [{"role": "user", "content": prompt}]
    if data.system_prompt:
        messages.insert(0, {"role": "system", "content": data.system_prompt.strip()})
    example = {
        "prompt": messages,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }
    return example, None, dedup_key(prompt, chosen, rejected)


def _json_cell(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _label_list(value: Any, separator: str) -> list[str]:
    """Several labels from a list, a JSON list cell, or a `separator`-joined cell; sorted, unique."""
    value = _json_cell(value)
    items = value if isinstance(value, list) else str(value or "").split(separator)
    return sorted({normalize_text(str(v)) for v in items} - {""})


def _entities(value: Any, text: str) -> list[dict[str, Any]] | None:
    """Character spans sorted by start, or None when a span is malformed, out of range or overlapping."""
    value = _json_cell(value)
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        return None
    spans = []
    for item in value:
        if not isinstance(item, dict) or not {"start", "end", "label"} <= set(item):
            return None
        start, end, label = item["start"], item["end"], normalize_text(str(item["label"]))
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) and label):
            return None
        spans.append({"start": start, "end": end, "label": label})
    spans.sort(key=lambda e: e["start"])
    if any(a["end"] > b["start"] for a, b in zip(spans, spans[1:])):
        return None
    return spans


def _split(examples: list[dict[str, Any]], task: TaskConfig) -> dict[str, list[dict[str, Any]]]:
    """Seeded split, stratified by label for classification.

    Allocation is per class by hand rather than sklearn's stratified splitter: it guarantees
    every class with at least 3 examples appears in validation and test, which sklearn does
    not promise for the rare classes real queues have.
    """
    cfg = task.data.split
    rng = random.Random(cfg.seed)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in examples:
        groups[ex.get("label", "")].append(ex)
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for key in sorted(groups):
        items = groups[key]
        rng.shuffle(items)
        n = len(items)
        n_test = max(1, round(n * cfg.test)) if n >= 3 else 0
        n_val = (max(1, round(n * cfg.validation)) if n >= 3 else 0) if cfg.validation > 0 else 0
        out["test"].extend(items[:n_test])
        out["validation"].extend(items[n_test : n_test + n_val])
        out["train"].extend(items[n_test + n_val :])
    for split in SPLITS:
        rng.shuffle(out[split])
    return out


def _row_labels(example: dict[str, Any]) -> list[str]:
    """A row's classes (classification) or entity types (ner)."""
    if "entities" in example:
        return [e["label"] for e in example["entities"]]
    return example["labels"] if "labels" in example else [example["label"]]


def _label_set(task: TaskConfig, examples: list[dict[str, Any]]) -> list[str] | None:
    if task.type not in ("classification", "ner"):
        return None
    return sorted({label for e in examples for label in _row_labels(e)})


def dataset_version(task: TaskConfig, source_hashes: list[str]) -> str:
    payload = json.dumps(
        {"v": PREP_VERSION, "type": task.type, "data": task.data.model_dump(mode="json"), "sources": source_hashes},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def prepare_dataset(
    project: Project, task_name: str | None = None, log: Callable[[str], None] = lambda _msg: None
) -> PreparedDataset:
    """Prepare one task's data; reuses the existing version when inputs and settings are unchanged."""
    task = project.config.task(task_name)
    ws = Workspace(project.workspace)
    paths = [project.source_path(s) for s in task.data.sources]
    for p in paths:
        if not p.exists():
            raise DataError(
                f"data source not found: {p}. Check `data.sources[].path` in {project.path} "
                f"(paths are relative to the project file)."
            )
    hashes = [_sha256(p) for p in paths]
    version = dataset_version(task, hashes)
    folder = ws.dataset_dir(task.name, version)
    if (folder / "manifest.json").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        ws.set_latest_dataset(task.name, version)
        log(f"{task.name}: inputs unchanged, reusing dataset {version}")
        return PreparedDataset(**manifest["result"], reused=True)

    examples: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    accounts: list[SourceAccount] = []
    seen: dict[str, str] = {}
    required = task.data.columns.required()
    for source, path, digest in zip(task.data.sources, paths, hashes):
        rows = read_source(path, source)
        if rows:
            _columns_present(path, rows[0][1], required)
        rejected: Counter[str] = Counter()
        kept = dups = 0
        for location, record in rows:
            if any(c not in record for c in required):
                reason = "missing_columns"
                rejected[reason] += 1
                rejects.append({"location": location, "reason": reason})
                continue
            example, reason, key = _to_example(task, record)
            if example is None:
                rejected[reason] += 1
                rejects.append({"location": location, "reason": reason})
                continue
            if key in seen:
                dups += 1
                rejects.append({"location": location, "reason": "exact_duplicate", "duplicate_of": seen[key]})
                continue
            seen[key] = location
            if task.data.columns.slice:
                example["slice"] = normalize_text(record[task.data.columns.slice]) or "(empty)"
            example["id"] = f"{task.name}-{len(examples):06d}"
            example["source"] = location
            examples.append(example)
            kept += 1
        accounts.append(
            SourceAccount(path=str(path), sha256=digest, read=len(rows), kept=kept, rejected=dict(rejected), duplicates=dups)
        )
        log(f"{path.name}: read {len(rows)}, kept {kept}, rejected {sum(rejected.values())}, duplicates {dups}")
    if not examples:
        raise DataError(f"task '{task.name}': no usable rows in {[str(p) for p in paths]}; see the reasons above")

    splits = _split(examples, task)
    labels = _label_set(task, examples)
    result = PreparedDataset(
        task=task.name,
        version=version,
        path=str(folder),
        reused=False,
        counts={s: len(v) for s, v in splits.items()},
        labels=labels,
        sources=accounts,
    )
    with atomic_dir(folder) as tmp:
        for split, rows in splits.items():
            write_jsonl_atomic(tmp / f"{split}.jsonl", rows)
        write_jsonl_atomic(tmp / "rejects.jsonl", rejects)
        manifest = {
            "result": result.model_dump(exclude={"reused"}),
            "task_type": task.type,
            "data_config": task.data.model_dump(mode="json"),
            "label_counts": {s: dict(Counter(lab for e in v for lab in _row_labels(e))) for s, v in splits.items()} if labels else None,
            "prep_version": PREP_VERSION,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    ws.set_latest_dataset(task.name, version)
    return result


def load_split(dataset_dir: str | Path, split: str) -> list[dict[str, Any]]:
    path = Path(dataset_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path} is missing; run `tuneloom data prepare` again")
    return read_jsonl(path)
