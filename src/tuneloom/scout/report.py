"""The scout's HTML report (comparison tables, quality-vs-latency and quality-vs-memory plots) and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.artifacts import write_scout
from tuneloom.reports import plots
from tuneloom.reports.html import render_to
from tuneloom.scout import rank

if TYPE_CHECKING:
    from tuneloom.scout import ScoutResult, TaskScout


def _plots(task: TaskScout) -> list[str]:
    points: list[dict[str, Any]] = [
        {
            "name": r.name,
            "quality": r.quality,
            "latency": r.measurement.latency_ms,
            "memory": r.measurement.peak_memory_mb,
            "size": r.facts.parameters if r.facts else 1,
            "chosen": r.recommended,
        }
        for r in task.rows
        if r.measurement is not None and r.quality is not None
    ]
    if not points:
        return []
    return [
        plots.scatter(
            points,
            "latency",
            "quality",
            "latency of one request at batch 1 (ms)",
            task.quality_metric,
            f"{task.task}: quality vs latency",
        ),
        plots.scatter(
            points, "memory", "quality", "measured peak memory (MB)", task.quality_metric, f"{task.task}: quality vs memory"
        ),
    ]


def write_scout_report(result: ScoutResult, out_dir: Path) -> tuple[Path, Path]:
    """Write `scout.json` and `report.html` into `out_dir`; returns their paths (HTML, JSON)."""
    json_path = write_scout(out_dir, result)
    tasks = []
    for t in result.tasks:
        names = sorted({k for r in t.rows if r.measurement for k in r.measurement.quality})
        tasks.append({**t.model_dump(mode="json"), "plots": _plots(t), "score_names": names})
    html = render_to(
        out_dir / "report.html",
        "scout.html.j2",
        result={**result.model_dump(mode="json"), "tasks": tasks},
        rule=(rank.__doc__ or "").split("The rule: ", 1)[-1].replace("\n", " ").strip(),
    )
    return html, json_path
