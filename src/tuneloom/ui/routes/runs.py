"""Runs and jobs: the run list, launching/cancelling/resuming server-side jobs, live progress (SSE), one run,
its evaluation and gate, and the side-by-side comparison of runs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import yaml
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tuneloom.ui import charts
from tuneloom.ui.deps import AdminPost, Console, ConsoleDep, Forbidden, Viewer, render, see_other
from tuneloom.ui.jobs import TERMINAL, JobError
from tuneloom.ui.views import RunView, curves, list_runs, run_view, runs_of_pid

router = APIRouter()
KINDS = ("prepare", "train", "eval", "gate", "run", "iterate")
_OVERRIDE = re.compile(r"^(?:[A-Za-z0-9_.-]+:)?[A-Za-z_][A-Za-z0-9_.]*=[^\n]{1,200}$")
SSE_INTERVAL_S = 1.0


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    runs = list_runs(app.workspace)
    return render(request, "runs.html", runs=runs, jobs=app.jobs.all(), kinds=KINDS, tasks=app.project.config.task_names())


def job_argv(app: Console, kind: str, task: str, run: str, overrides: str) -> list[str]:
    """The `tuneloom` command line of a job from the launch form; Forbidden names what is wrong."""
    config = str(app.project.path)
    if kind not in KINDS:
        raise Forbidden(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
    if task and task not in app.project.config.task_names():
        raise Forbidden(f"no task {task!r} in the project")
    sets = [line.strip() for line in overrides.splitlines() if line.strip()]
    bad = [s for s in sets if not _OVERRIDE.match(s)]
    if bad:
        raise Forbidden(f"override {bad[0]!r} is not SETTING=VALUE (e.g. train.max_steps=20)")
    set_args = [a for s in sets for a in ("--set", s)]
    task_args = ["--task", task] if task else []
    if kind in ("eval", "gate"):
        ref = run or (f"latest:{task}" if task else "latest")
        if run:
            run_view(app.workspace, run)  # NotFound for a name that is not a run folder here
        return [kind, ref, "-c", config]
    if kind == "prepare":
        return ["data", "prepare", "-c", config, *task_args]
    return [kind, "-c", config, *task_args, *set_args]


@router.post("/jobs")
def launch(
    request: Request,
    app: ConsoleDep,
    session: AdminPost,
    kind: str = Form(...),
    task: str = Form(""),
    run: str = Form(""),
    overrides: str = Form(""),
) -> Response:
    argv = job_argv(app, kind, task, run, overrides)
    job = app.jobs.launch(kind, argv, task=task or None, run=run or None, user=session.key_id)
    return see_other(request, f"/jobs/{job.id}")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    job = app.jobs.get(job_id)
    log, offset = app.jobs.log(job_id)
    runs = runs_of_pid(app.workspace, job.pid)
    return render(
        request, "job.html", job=job, log=log, offset=offset, runs=runs, chart=_job_chart(runs), terminal=job.state in TERMINAL
    )


def _job_chart(runs: list[RunView]) -> str:
    series = {f"{r.name} {k}": pts for r in runs for k, pts in curves(r).items()}
    return charts.line_chart("Loss by step", series)


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str, app: ConsoleDep, session: Viewer, offset: int = 0) -> Response:
    """Server-sent events: `update` (state, new log text, the loss chart) each second, `done` at the end."""
    app.jobs.get(job_id)  # 404 page for an unknown job before the stream starts
    return StreamingResponse(
        _updates(request, app, job_id, max(0, offset)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _updates(request: Request, app: Console, job_id: str, offset: int) -> AsyncIterator[str]:
    chart = None
    while not await request.is_disconnected():
        job = await run_in_threadpool(app.jobs.get, job_id)
        text, offset = await run_in_threadpool(app.jobs.log, job_id, offset)
        runs = await run_in_threadpool(runs_of_pid, app.workspace, job.pid)
        new_chart = await run_in_threadpool(_job_chart, runs)
        data: dict[str, Any] = {"state": job.state, "log": text, "offset": offset}
        if new_chart != chart:
            data["chart"] = chart = new_chart
        yield f"event: update\ndata: {json.dumps(data)}\n\n"
        if job.state in TERMINAL:
            yield f"event: done\ndata: {json.dumps({'state': job.state})}\n\n"
            return
        await asyncio.sleep(SSE_INTERVAL_S)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, app: ConsoleDep, session: AdminPost) -> Response:
    try:
        app.jobs.cancel(job_id)
    except JobError as exc:
        raise Forbidden(str(exc)) from None
    return see_other(request, f"/jobs/{job_id}")


@router.get("/runs/{run}", response_class=HTMLResponse)
def run_page(request: Request, run: str, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    view = run_view(app.workspace, run)
    config = yaml.safe_dump(view.snapshot.task, sort_keys=False, allow_unicode=True) if view.snapshot else ""
    chart = charts.line_chart(f"{run}: loss by step", curves(view))
    return render(request, "run.html", run=view, config=config, chart=chart)


@router.post("/runs/{run}/resume")
def resume(request: Request, run: str, app: ConsoleDep, session: AdminPost) -> Response:
    view = run_view(app.workspace, run)
    if view.state != "interrupted":
        raise Forbidden(f"run {run} is {view.state}: only an interrupted run can be resumed")
    argv = ["train", "-c", str(app.project.path), "--resume", run]
    job = app.jobs.launch("resume", argv, task=view.task, run=run, user=session.key_id)
    return see_other(request, f"/jobs/{job.id}")


@router.get("/runs/{run}/eval", response_class=HTMLResponse)
def eval_page(request: Request, run: str, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    """Base vs tuned vs production with intervals, per class and per slice, improved/worsened examples, the gate."""
    view = run_view(app.workspace, run)
    return render(request, "eval.html", run=view, ev=view.eval, feedback_ev=view.feedback_eval, gate=view.gate)


def flat(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted keys -> YAML-ish values, for the config diff."""
    if isinstance(data, dict) and data:
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(data, ensure_ascii=False)}


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, app: ConsoleDep, session: Viewer, run: list[str] = Query(default=[])) -> HTMLResponse:
    """Two or more runs side by side: settings that differ, metrics with intervals, loss curves overlaid."""
    views = [run_view(app.workspace, r) for r in dict.fromkeys(run)]
    if len(views) < 2:
        return render(request, "compare.html", runs=views, all_runs=list_runs(app.workspace), diff=[], metrics=[], chart="")
    configs = [{"dataset.version": v.snapshot.dataset.version, **flat(v.snapshot.task)} if v.snapshot else {} for v in views]
    keys = sorted(set().union(*configs))
    diff = [(k, [c.get(k, "—") for c in configs]) for k in keys if len({c.get(k, "—") for c in configs}) > 1]
    shown = list(dict.fromkeys(m for v in views if v.eval for m in v.eval.metrics_shown))
    metrics = [(m, [_metric_cell(v, m) for v in views]) for m in shown]
    with_retrieval = list(dict.fromkeys(m for v in views if v.eval and v.eval.retrieval for m in _retrieved(v)))
    metrics += [(f"{m}, tuned+retrieval", [_retrieval_cell(v, m) for v in views]) for m in with_retrieval]
    series = {f"{v.name} {k}": pts for v in views for k, pts in curves(v).items()}
    chart = charts.line_chart("Loss by step, runs overlaid", series)
    return render(request, "compare.html", runs=views, all_runs=list_runs(app.workspace), diff=diff, metrics=metrics, chart=chart)


def _metric_cell(view: RunView, metric: str) -> str:
    """`tuned (Δ vs base +x [lo, hi])`, or a dash when the run was not evaluated on that metric."""
    ev = view.eval
    if ev is None or metric not in ev.tuned:
        return "—"
    cell = f"{ev.tuned[metric]:.4f}"
    comparison = ev.comparison.get(metric)
    if comparison and "delta" in comparison:
        cell += f" (Δ {comparison['delta']:+.4f}"
        interval = ev.intervals.get(metric)
        cell += f", 95% [{interval[0]:+.4f}, {interval[1]:+.4f}])" if interval else ")"
    return cell


def _retrieved(view: RunView) -> dict[str, float]:
    """The tuned model's metrics with retrieved passages in its prompts (tasks with a knowledge base)."""
    retrieval = view.eval.retrieval if view.eval else None
    return retrieval.sides.get("tuned+retrieval", {}) if retrieval else {}


def _retrieval_cell(view: RunView, metric: str) -> str:
    """`tuned+retrieval (Δ vs tuned without it +x [lo, hi])`, or a dash."""
    value = _retrieved(view).get(metric)
    if value is None or view.eval is None or view.eval.retrieval is None:
        return "—"
    delta = view.eval.retrieval.deltas.get("tuned+retrieval vs tuned", {}).get(metric)
    gain = f" (Δ vs without {delta.delta:+.4f}, 95% [{delta.low:+.4f}, {delta.high:+.4f}])" if delta else ""
    return f"{value:.4f}{gain}"


@router.get("/eval", response_class=HTMLResponse)
def evaluations_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    """Every evaluated run with its gate verdict, newest first."""
    runs = [r for r in list_runs(app.workspace) if r.eval is not None or r.gate is not None]
    return render(request, "evaluations.html", runs=runs)
