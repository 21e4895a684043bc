"""A run's params and metrics as MLflow takes them: flattened, with safe keys and bounded values."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)
_MAX_PARAM = 6000  # MLflow's limit on a param value


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level with dotted keys (`{"a": {"b": 1}}` -> `{"a.b": 1}`)."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = data
    return out


def mlflow_key(key: str) -> str:
    """A param or metric name MLflow accepts."""
    return re.sub(r"[^\w./ -]", "_", key)[:250]


def run_params(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Run params from a run snapshot (as a mapping): the task config (flattened), base model, method,
    dataset, precision and library versions; nothing secret-looking."""
    task = snapshot.get("task") or {}
    raw = {f"task.{k}": v for k, v in flatten(task).items()}
    raw.update(
        {
            "base_model": task.get("model"),
            "base_model_path": snapshot.get("base_model_path"),
            "method": (task.get("method") or {}).get("kind"),
            "task_type": task.get("type"),
            "dataset_version": (snapshot.get("dataset") or {}).get("version"),
            "precision": snapshot.get("precision"),
        }
    )
    raw.update({f"versions.{k}": v for k, v in (snapshot.get("versions") or {}).items()})
    params = {}
    for key, value in raw.items():
        if value is None or _SECRET_KEY.search(key):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        params[mlflow_key(key)] = text[:_MAX_PARAM]
    return params


def run_metrics(scores: Mapping[str, Any]) -> dict[str, float]:
    """Numeric scores as metrics (nested mappings such as per_class flattened; lists and NaN skipped)."""
    out = {}
    for key, value in flatten(scores).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[mlflow_key(key)] = float(value)
    return out
