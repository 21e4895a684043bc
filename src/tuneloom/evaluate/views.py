"""Views of a raw evaluation: metric comparisons, improved / worsened examples, results per slice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneloom.tasks import TaskKind


def compare(result: dict[str, Any], metric: str, reference: str = "base") -> dict[str, float]:
    """One metric: reference and tuned values, their difference and its 95% interval."""
    row = {reference: result[reference][metric], "tuned": result["tuned"][metric]}
    row["delta"] = row["tuned"] - row[reference]
    intervals = result.get("intervals" if reference == "base" else f"intervals_{reference}", {})
    if metric in intervals:
        row["ci_low"], row["ci_high"] = intervals[metric]
    return row


Score = Callable[[dict[str, Any], str], float]


def _ranked(result: dict[str, Any]) -> tuple[str, Score]:
    """Set `improved` / `worsened` from the examples' own fields; returns (slice metric, per-example score)."""
    examples = result["examples"]
    if "example_metric" in result:  # one score per example and model
        scored = sorted(examples, key=lambda e: e["score_tuned"] - e["score_base"])
        result["improved"] = [e for e in reversed(scored) if e["score_tuned"] > e["score_base"]][:10]
        result["worsened"] = [e for e in scored if e["score_tuned"] < e["score_base"]][:10]
        return result["example_metric"], lambda e, side: e[f"score_{side}"]
    if examples and "token_f1_base" in examples[0]:  # generated answers
        for e in examples:
            e["delta"] = round(e["token_f1_tuned"] - e["token_f1_base"], 4)
        scored = sorted(examples, key=lambda e: e["delta"])
        result["improved"] = [e for e in reversed(scored) if e["delta"] > 0][:10]
        result["worsened"] = [e for e in scored if e["delta"] < 0][:10]
        return "token_f1", lambda e, side: e[f"token_f1_{side}"]
    result["improved"] = [e for e in examples if e["tuned"] == e["label"] != e["base"]][:15]  # predicted labels
    result["worsened"] = [e for e in examples if e["base"] == e["label"] != e["tuned"]][:15]
    return "accuracy", lambda e, side: float(e[side] == e["label"])


def per_example_views(kind: TaskKind, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Add `slices` (results per slice value, or the kind's slice key) and `improved` / `worsened` example lists."""
    metric, score = _ranked(result)
    keys = [r.get("slice") or kind.slice_key(r) for r in rows]
    if not any(keys):
        result["slices"] = {}
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, e in zip(keys, result["examples"]):
        if not e.get("unscored"):  # e.g. a test question no chunk grounds: in the examples, not in the averages
            groups.setdefault(str(key), []).append(e)
    result["slices"] = {
        key: {
            "n": len(items),
            "metric": metric,
            "base": sum(score(e, "base") for e in items) / len(items),
            "tuned": sum(score(e, "tuned") for e in items) / len(items),
        }
        for key, items in sorted(groups.items())
    }
