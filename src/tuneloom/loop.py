"""`run_project`: the whole loop (prepare -> train -> evaluate -> report) for every task."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console

from tuneloom.artifacts import EvalResult, IndexStats, RetrievalComparison
from tuneloom.config import Project
from tuneloom.data import prepare_dataset
from tuneloom.evaluate import evaluate_run
from tuneloom.evaluate.gate import choose_gate_rules, gate_run
from tuneloom.evaluate.inputs import find_production
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
    retrieval: RetrievalComparison | None = None  # tasks with a knowledge base: with and without retrieval


class LoopResult(BaseModel):
    report: str
    seconds: float
    tasks: list[TaskOutcome]
    knowledge: list[IndexStats] = []


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
    knowledge = _update_knowledge(project, console)
    outcomes = [_run_task(project, name, console) for name in names]
    ws = Workspace(project.workspace)
    runs = [Path(o.run_dir) for o in outcomes]
    title = f"{project.config.project}: base vs tuned"
    report = write_report(runs, ws.report_dir(time.strftime("%Y%m%d-%H%M%S")), title, ws.root)
    return LoopResult(report=str(report), seconds=round(time.time() - started, 1), tasks=outcomes, knowledge=knowledge)


def _update_knowledge(project: Project, console: Console) -> list[IndexStats]:
    """Build or update every knowledge base of the project (only changed documents are embedded again)."""
    if not project.config.knowledge:
        return []
    from tuneloom.knowledge import update_index

    done = []
    for kb in project.config.knowledge:
        console.rule(f"[bold]knowledge: {kb.name}")
        stats = update_index(project, kb.name, progress=console.is_terminal)
        console.print(
            f"  {stats.documents} documents, {stats.chunks} chunks ({stats.added} added, {stats.changed} changed, "
            f"{stats.removed} removed, {len(stats.skipped)} skipped)"
        )
        done.append(stats)
    return done


def _run_task(project: Project, name: str, console: Console) -> TaskOutcome:
    """Prepare, train, evaluate (against production when there is one) and gate one task."""
    console.rule(f"[bold]{name}")
    dataset = prepare_dataset(project, name, log=lambda m: console.print(f"  data: {m}"))
    counts = ", ".join(f"{k} {v}" for k, v in dataset.counts.items())
    console.print(f"  dataset {dataset.version} ({counts})")
    run_dir = Path(train_task(project, name, dataset.path, console).run_dir)
    ev = evaluate_run(run_dir, console, production=find_production(run_dir, project))
    rules = choose_gate_rules(run_dir, project)
    gate = gate_run(run_dir, rules.gate, rules.source)
    return TaskOutcome(
        task=name,
        type=project.config.task(name).type,
        run_dir=str(run_dir),
        comparison=ev.comparison,
        gate_passed=gate.passed,
        gate_rules=len(gate.rules),
        gate_failures=[r.detail for r in gate.rules if not r.passed],
        forgetting=_forgetting(ev),
        retrieval=ev.retrieval,
    )
