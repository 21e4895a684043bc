"""`scout_models`: measure candidate base models on this machine and the task's own data, then recommend one.

candidates -> facts (config, weights, card) -> estimates (shared memory planner) -> measurements and
baseline quality (a subprocess per candidate, with a timeout) -> constraints and ranking -> report.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from tuneloom.artifacts import Artifact
from tuneloom.catalog import CATALOG
from tuneloom.config import Project, TaskConfig
from tuneloom.data import load_split, prepare_dataset
from tuneloom.errors import DataError, TuneloomError
from tuneloom.scout.apply import apply_model
from tuneloom.scout.candidates import Candidate, candidates_for
from tuneloom.scout.estimates import candidate_estimates
from tuneloom.scout.facts import model_facts
from tuneloom.scout.measure import MeasureJob, run_measurement
from tuneloom.scout.rank import ScoutRow, quality_metric, rank_rows
from tuneloom.scout.report import write_scout_report
from tuneloom.tasks import kind_of
from tuneloom.train.memory import GB, available_memory, model_shape

__all__ = ["ScoutResult", "ScoutRow", "TaskScout", "scout_models"]

MIN_SHARE_S = 5.0  # a candidate with less time than this left is reported as not measured


class TaskScout(BaseModel):
    task: str
    type: str
    quality_metric: str
    validation_size: int
    sample_size: int
    sampled: bool
    seed: int
    batch_size: int
    max_length: int
    rows: list[ScoutRow]
    recommended: str | None
    recommended_model: str | None
    reason: str


class ScoutResult(Artifact):
    """`scout/<time>/scout.json`: every scouted task's candidates, measurements and recommendation."""

    project: str
    machine: str
    available_gb: float
    budget_s: float
    seconds: float
    tasks: list[TaskScout]
    report: str | None = None
    json_path: str | None = None
    applied: list[str] = []


def _task_text(task: TaskConfig, row: dict[str, Any]) -> str:
    if kind_of(task.type).scout_quality == "probe":
        return row["text"]
    return "\n".join(m["content"] for m in row["messages"] if m["role"] != "system")


class _Data(BaseModel):
    validation: list[dict[str, Any]]
    sample: list[dict[str, Any]]
    shots: list[dict[str, Any]]
    probe: list[dict[str, Any]]
    labels: list[str] | None


def _task_data(project: Project, task: TaskConfig) -> _Data:
    dataset = prepare_dataset(project, task.name)
    validation = load_split(Path(dataset.path), "validation")
    if not validation:
        raise DataError(f"task '{task.name}' has no validation examples to scout on: set data.split.validation above 0")
    train = load_split(Path(dataset.path), "train")
    scout = project.config.scout
    rng = random.Random(task.data.split.seed)
    sample = rng.sample(validation, min(scout.sample_size, len(validation)))
    quality = kind_of(task.type).scout_quality
    shots = rng.sample(train, min(scout.few_shot, len(train))) if quality == "generation" else []
    probe = rng.sample(train, min(scout.probe_train_size, len(train))) if quality == "probe" else []
    return _Data(validation=validation, sample=sample, shots=shots, probe=probe, labels=dataset.labels)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80]


def _scout_row(
    project: Project, task: TaskConfig, cand: Candidate, data: _Data, available: int, timeout_s: float, workdir: Path
) -> ScoutRow:
    scout = project.config.scout
    row = ScoutRow(task=task.name, model=cand.model, label=cand.label, precision=cand.precision)
    try:
        row.facts = model_facts(cand.model, task.trust_remote_code)
        shape = model_shape(row.facts.path, task.trust_remote_code)
    except TuneloomError as exc:
        row.error = str(exc)
        return row
    except Exception as exc:  # an unreadable config or unknown architecture: this candidate's error, not the scout's
        row.error = f"cannot read the model's config: {type(exc).__name__}: {exc}"
        return row
    quantizable = CATALOG[cand.model].quantizable if cand.model in CATALOG else shape.decoder
    if kind_of(task.type).head == "sequence_classification":  # training puts a head on the model: its logits are the classes
        shape = shape.model_copy(update={"vocab_size": max(len(data.labels or []), 2)})
    context = scout.context_length or task.train.max_length
    row.estimates = candidate_estimates(shape, task, cand.precision, context, available, quantizable)
    if timeout_s < MIN_SHARE_S:
        row.error = "not measured: the scout's time budget (scout.time_budget_s) was used up"
        return row
    domain = (project.root / scout.domain_text).read_text(encoding="utf-8") if scout.domain_text else None
    job = MeasureJob(
        path=row.facts.path,
        precision=cand.precision,
        task_type=task.type,
        trust_remote_code=task.trust_remote_code,
        rows=data.sample,
        texts=[_task_text(task, r) for r in data.validation],
        shots=data.shots,
        probe_rows=data.probe,
        labels=data.labels,
        descriptions=task.label_descriptions or {},
        max_length=task.train.max_length,
        context_window=row.facts.context_window,
        max_new_tokens=scout.max_new_tokens,
        batch_size=task.eval.batch_size,
        domain_text=domain,
    )
    row.measurement, row.error = run_measurement(job, timeout_s, workdir / _slug(f"{task.name}-{cand.name}"))
    return row


def scout_models(
    project: Project, task_name: str | None = None, apply: bool = False, console: Console | None = None
) -> ScoutResult:
    """Compare the scout's candidates for one task (or every task), write the report, optionally apply the choice."""
    console = console or Console(stderr=True)
    scout = project.config.scout
    started = time.time()
    tasks = [project.config.task(task_name)] if task_name else list(project.config.tasks)
    if scout.domain_text and not (project.root / scout.domain_text).is_file():
        raise DataError(f"scout.domain_text: {project.root / scout.domain_text} does not exist")
    plan = [(t, candidates_for(project, t.name)) for t in tasks]
    data = {t.name: _task_data(project, t) for t in tasks}
    available, where = available_memory()
    out_dir = project.workspace / "scout" / time.strftime("%Y%m%d-%H%M%S")
    left = sum(len(c) for _, c in plan)
    results = []
    for task, cands in plan:
        metric = quality_metric(kind_of(task.type).scout_quality, scout)
        rows = []
        for cand in cands:
            share = (scout.time_budget_s - (time.time() - started)) / left
            console.print(f"[bold]{task.name}[/]: {cand.name} (up to {max(share, 0):.0f} s)")
            rows.append(_scout_row(project, task, cand, data[task.name], available, share, out_dir / "candidates"))
            left -= 1
            if rows[-1].error:
                console.print(f"  [red]{rows[-1].error}")
        chosen, reason = rank_rows(rows, metric, scout)
        d = data[task.name]
        results.append(
            TaskScout(
                task=task.name,
                type=task.type,
                quality_metric=metric,
                validation_size=len(d.validation),
                sample_size=len(d.sample),
                sampled=len(d.sample) < len(d.validation),
                seed=task.data.split.seed,
                batch_size=task.train.batch_size,
                max_length=task.train.max_length,
                rows=rows,
                recommended=chosen.name if chosen else None,
                recommended_model=chosen.model if chosen else None,
                reason=reason,
            )
        )
    result = ScoutResult(
        project=project.config.project,
        machine=f"{where}, {os.cpu_count()} CPU cores",
        available_gb=round(available / GB, 1),
        budget_s=scout.time_budget_s,
        seconds=round(time.time() - started, 1),
        tasks=results,
        report=str(out_dir / "report.html"),
        json_path=str(out_dir / "scout.json"),
    )
    if apply:
        for t in results:
            if t.recommended_model and apply_model(project.path, t.task, t.recommended_model):
                result.applied.append(f"{t.task}: model set to {t.recommended_model} in {project.path}")
    write_scout_report(result, out_dir)
    return result
