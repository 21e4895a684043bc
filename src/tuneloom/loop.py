"""`run_project`: the whole loop (prepare -> train -> evaluate -> report) for every task."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console

from tuneloom.artifacts import EvalResult
from tuneloom.config import Project
from tuneloom.data import prepare_dataset
from tuneloom.evaluate import evaluate_run
from tuneloom.evaluate.gate import gate_run
from tuneloom.registry.lookup import production_for
from tuneloom.reports import write_report
from tuneloom.train import train_task
from tuneloom.workspace import Workspace


class TaskOutcome(BaseModel):
    task: str
    type: str
    run_dir: str
    comparison: dict[str, dict[str, float]]
    gate_passed: bool
    gate_rules: int
    gate_failures: list[str]
    forgetting: dict[str, float] | None = None  # chat: general-ability token F1, base and tuned


class LoopResult(BaseModel):
    report: str
    seconds: float
    tasks: list[TaskOutcome]


def _forgetting(ev: EvalResult) -> dict[str, float] | None:
    """Base and tuned token F1 on the general-ability set, when the evaluation scored it."""
    f = ev.forgetting
    return {"base": f["base"]["token_f1"], "tuned": f["tuned"]["token_f1"]} if f else None


def run_project(project: Project, tasks: list[str] | None = None, console: Console | None = None) -> LoopResult:
    """Prepare, train and evaluate each task (all by default), then write one report."""
    console = console or Console(stderr=True)
    started = time.time()
    names = tasks or project.config.task_names()
    for name in names:
        project.config.task(name)  # fail on a wrong name before any work
    runs: list[Path] = []
    outcomes: list[TaskOutcome] = []
    for name in names:
        console.rule(f"[bold]{name}")
        dataset = prepare_dataset(project, name, log=lambda m: console.print(f"  data: {m}"))
        counts = ", ".join(f"{k} {v}" for k, v in dataset.counts.items())
        console.print(f"  dataset {dataset.version} ({counts})")
        result = train_task(project, name, dataset.path, console)
        task = project.config.task(name)
        ev = evaluate_run(result.run_dir, console, production=production_for(project, task))
        runs.append(Path(result.run_dir))
        gate = gate_run(Path(result.run_dir), task.gate, str(project.path))
        outcomes.append(
            TaskOutcome(
                task=name, type=task.type, run_dir=result.run_dir, comparison=ev.comparison,
                gate_passed=gate.passed, gate_rules=len(gate.rules),
                gate_failures=[r.detail for r in gate.rules if not r.passed],
                forgetting=_forgetting(ev),
            )
        )
    ws = Workspace(project.workspace)
    report = write_report(runs, ws.report_dir(time.strftime("%Y%m%d-%H%M%S")), f"{project.config.project}: base vs tuned", ws.root)
    return LoopResult(report=str(report), seconds=round(time.time() - started, 1), tasks=outcomes)
