"""Read-only pages: Project, Data (dataset versions, accounting, rejects) and Scout."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tuneloom.artifacts import ArtifactError, read_rejects
from tuneloom.errors import TuneloomError
from tuneloom.ui import charts
from tuneloom.ui.deps import ConsoleDep, Viewer, render
from tuneloom.ui.views import dataset_version, dataset_versions, knowledge_bases, list_runs, scout_results

router = APIRouter()
REJECTS_SHOWN = 200


@router.get("/", response_class=HTMLResponse)
def project_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    """The project file, whether it still validates, its tasks and the next step."""
    from tuneloom.config import load_project

    path = app.project.path
    try:
        load_project(path)
        problem = None
    except (TuneloomError, ValueError) as exc:
        problem = str(exc)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    datasets = dataset_versions(app.project)
    runs = list_runs(app.workspace)
    return render(
        request,
        "project.html",
        problem=problem,
        text=text,
        datasets=datasets,
        runs=runs,
        next_steps=_next(datasets, runs),
        knowledge=knowledge_bases(app.project),
    )


def _next(datasets: dict[str, list[Any]], runs: list[Any]) -> list[tuple[str, str, str]]:
    """(what, command, console path) of each task's next step, the task furthest behind first."""
    steps: list[tuple[int, str, str, str]] = []
    for task, versions in datasets.items():
        mine = [r for r in runs if r.task == task]
        if not versions:
            steps.append((0, f"Prepare the {task} data", f"tuneloom data prepare --task {task}", "/runs#launch"))
        elif not mine:
            steps.append((1, f"Train {task}", f"tuneloom train --task {task}", "/runs#launch"))
        elif mine[0].eval is None:  # newest first
            steps.append((2, f"Evaluate {mine[0].name}", f"tuneloom eval {mine[0].name}", f"/runs/{mine[0].name}"))
        else:
            what = f"Compare the {task} runs, then register and promote the best"
            steps.append((3, what, f"tuneloom models register {mine[0].name}", f"/registry/{task}"))
    return [step[1:] for step in sorted(steps, key=lambda s: s[0])]


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    return render(request, "data.html", datasets=dataset_versions(app.project))


@router.get("/data/{task}/{version}", response_class=HTMLResponse)
def dataset_page(request: Request, task: str, version: str, app: ConsoleDep, session: Viewer, q: str = "") -> HTMLResponse:
    """One dataset version: accounting per source, label balance, lengths, rejected rows (searchable)."""
    ds = dataset_version(app.project, task, version)
    try:
        rejects = read_rejects(ds.path)
        problem = ds.problem
    except ArtifactError as exc:
        rejects, problem = [], str(exc)
    needle = q.strip().lower()
    matching = [r for r in rejects if not needle or needle in r.model_dump_json().lower()]
    m = ds.manifest
    balance = ""
    if m is not None and m.label_counts:
        totals: dict[str, float] = {}
        for split in m.label_counts.values():
            for label, n in split.items():
                totals[label] = totals.get(label, 0) + n
        balance = charts.bar_chart("Examples per label (all splits)", totals)
    lengths = _length_chart(m.tokens) if m is not None and m.tokens else ""
    return render(
        request,
        "dataset.html",
        ds=ds,
        problem=problem,
        rejects=matching[:REJECTS_SHOWN],
        n_matching=len(matching),
        n_rejects=len(rejects),
        q=q,
        balance=balance,
        lengths=lengths,
    )


def _length_chart(tokens: dict[str, Any]) -> str:
    """Median, 95th percentile and longest example of each split (the manifest's `tokens`, one entry per split)."""
    bars: dict[str, float] = {}
    limit = None
    for split, stats in tokens.items():
        if not isinstance(stats, dict):
            continue
        limit = stats.get("max_length", limit)
        for key, word in (("p50", "median"), ("p95", "p95"), ("max", "longest")):
            if isinstance(stats.get(key), int | float):
                bars[f"{split} {word}"] = float(stats[key])
    if isinstance(limit, int | float):
        bars["train.max_length"] = float(limit)
    return charts.bar_chart("Tokens per example, per split", bars) if bars else ""


@router.get("/scout", response_class=HTMLResponse)
def scout_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    results: list[tuple[str, Any, str | None]] = []
    plots = {}
    for name, result in scout_results(app.workspace):
        if isinstance(result, Exception):
            results.append((name, None, str(result)))
            continue
        results.append((name, result, None))
        for task in result.tasks:
            plots[(name, task.task)] = _scout_plot(task)
    return render(request, "scout.html", results=results, plots=plots)


def _scout_plot(task: Any) -> str:
    """Each candidate's quality on the validation sample, as bars."""
    bars = {row.name: round(row.quality, 4) for row in task.rows if row.quality is not None}
    return charts.bar_chart(f"{task.task}: {task.quality_metric} per candidate", bars)
