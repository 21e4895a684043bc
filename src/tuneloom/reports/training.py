"""HTML reports written by training: one per run (loss and learning rate) and one per search."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tuneloom.artifacts import read_snapshot, read_summary
from tuneloom.atomic import read_jsonl, write_text_atomic
from tuneloom.reports import plots


def _render(template: str, path: Path, **context: Any) -> Path:
    env = Environment(loader=PackageLoader("tuneloom", "templates"), autoescape=select_autoescape(["html", "j2"]))
    write_text_atomic(path, env.get_template(template).render(generated=time.strftime("%Y-%m-%d %H:%M"), **context))
    return path


def write_run_report(run: Path) -> Path:
    """`run/report.html`: the run's settings, results, loss curves and learning rate (eval replaces it later)."""
    snapshot, summary = read_snapshot(run), read_summary(run).train.model_dump()
    metrics = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    task = snapshot.task
    images = [plots.loss_curves(metrics, f"{task['name']}: loss"), plots.learning_rate(metrics)]
    return _render(
        "run_report.html.j2",
        run / "report.html",
        run=run.name,
        task=task,
        train=summary,
        dataset=snapshot.dataset.model_dump(),
        plots=images,
    )


def write_search_report(folder: Path, search: dict[str, Any]) -> Path:
    """`folder/report.html` for a hyperparameter search (`search` as written to search.json)."""
    trials = search["trials"]
    images = [plots.trial_values(trials, f"{search['study']}: validation loss per trial")]
    importances = search.get("importances") or {}
    if importances:
        images.append(plots.param_importances(importances))
    images.append(plots.parallel_coordinates(trials, search["params"]))
    return _render("search_report.html.j2", folder / "report.html", search=search, plots=images)
