"""Small projects and hand-written dataset folders for the ner, preference, pretrain and multi-label tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import _PRODUCTS, _QUESTIONS, write_jsonl

_CITIES = ["Paris", "Berlin", "Leeds", "Madrid", "Oslo", "Lyon"]
_COURIERS = ["DHL", "UPS", "Royal Mail", "DPD"]


def ner_rows(n: int = 48) -> list[dict[str, Any]]:
    """Sentences with ORDER, CITY and COURIER spans (character offsets, end exclusive)."""
    rows = []
    for i in range(n):
        order, city, courier = f"ACM-{1000 + 37 * i}", _CITIES[i % 6], _COURIERS[i % 4]
        parts = [("Order ", None), (order, "ORDER"), (" left ", None), (city, "CITY"), (" with ", None), (courier, "COURIER")]
        if i % 3 == 0:
            parts = [("My parcel from ", None), (city, "CITY"), (" never came, order ", None), (order, "ORDER"), (".", None)]
        text, entities = "", []
        for piece, label in parts:
            if label:
                entities.append({"start": len(text), "end": len(text) + len(piece), "label": label})
            text += piece
        rows.append({"sentence": text, "spans": json.dumps(entities)})
    return rows


def preference_rows() -> list[dict[str, str]]:
    rows = []
    for i, (p, (q, a)) in enumerate((p, qa) for qa in _QUESTIONS for p in _PRODUCTS):
        rows.append(
            {
                "question": q.format(p=p),
                "good": a.format(p=p, price=40 + i, ip=54 + i % 3),
                "bad": ["No idea, sorry.", "Please ask someone else.", "I cannot help with that."][i % 3],
            }
        )
    return rows[:40]


def pretrain_rows() -> list[dict[str, str]]:
    return [
        {"body": f"The {p} is made by Acme Home. " + a.format(p=p, price=40 + i, ip=54) * (1 + i % 3)}
        for i, (p, (_, a)) in enumerate((p, qa) for qa in _QUESTIONS for p in _PRODUCTS)
    ][:40]


def multilabel_rows() -> list[dict[str, str]]:
    combos = ["billing", "shipping", "billing,shipping", "tech_support", "shipping,tech_support"]
    return [
        {"text": f"Ticket {i}: about {combo.replace(',', ' and ')} for order ACM-{100 + i}", "labels": combo}
        for i, combo in enumerate(combos * 8)
    ]


TASKS = {
    "ner": ("entities.jsonl", ner_rows, {"text": "sentence", "entities": "spans"}),
    "preference": ("prefs.jsonl", preference_rows, {"prompt": "question", "chosen": "good", "rejected": "bad"}),
    "pretrain": ("corpus.jsonl", pretrain_rows, {"text": "body"}),
    "classification": ("multi.jsonl", multilabel_rows, {"text": "text", "label": "labels"}),
}


def write_task_project(root: Path, task_type: str, model: str | Path, max_steps: int = 2, **sections: Any) -> Path:
    """A one-task project of `task_type` (classification is multi-label) with its data; returns tuneloom.yaml."""
    filename, rows, columns = TASKS[task_type]
    (root / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "data" / filename, rows())
    task: dict[str, Any] = {
        "name": task_type.replace("_", "-"),
        "type": task_type,
        "model": str(model),
        "data": {
            "sources": [{"path": f"data/{filename}"}],
            "columns": columns,
            "split": {"validation": 0.15, "test": 0.15, "seed": 3},
        },
        "method": {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"max_steps": max_steps, "lr": 1e-3, "batch_size": 4, "max_length": 64, "eval_every": max_steps},
        "eval": {"max_examples": 6, "batch_size": 4},
    }
    if task_type == "classification":
        task["data"]["multi_label"] = True
    for key, value in sections.items():
        task[key] = {**task.get(key, {}), **value}
    path = root / "tuneloom.yaml"
    path.write_text(
        yaml.safe_dump({"project": f"{task_type}-project", "workspace": "workspace", "tasks": [task]}, sort_keys=False)
    )
    return path


def write_prepared(
    folder: Path, task_type: str, splits: dict[str, list[dict[str, Any]]], labels: list[str] | None = None
) -> Path:
    """A dataset folder in the shape `prepare_dataset` writes: split JSONL files and manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(folder / f"{split}.jsonl", [{"id": f"{split}-{i}", "source": "hand", **r} for i, r in enumerate(rows)])
    manifest = {
        "result": {
            "task": task_type,
            "version": "hand",
            "path": str(folder),
            "counts": {s: len(r) for s, r in splits.items()},
            "labels": labels,
            "sources": [],
        },
        "task_type": task_type,
        "data_config": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
