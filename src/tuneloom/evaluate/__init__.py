"""`evaluate_run`: base vs tuned (and production) on the held-out test split, written to the run folder."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tuneloom.artifacts import (
    EvalResult,
    EvalSummary,
    RunSnapshot,
    read_manifest,
    read_snapshot,
    read_summary,
    write_eval,
    write_summary,
)
from tuneloom.data import load_split
from tuneloom.errors import DataError
from tuneloom.evaluate.views import compare, per_example_views
from tuneloom.tasks import EvalContext, ProductionModel, kind_of
from tuneloom.workspace import run_state

__all__ = ["evaluate_run"]


def _test_rows(snapshot: RunSnapshot, dataset_dir: Path) -> tuple[list[str], list[dict[str, Any]], bool]:
    """(labels, test rows, whether they were sampled); the labels must be those the run was trained on."""
    trained_labels = read_manifest(snapshot.dataset.path).labels
    labels = read_manifest(dataset_dir).labels
    if labels != trained_labels:
        raise DataError(f"{dataset_dir} has labels {labels}, the run was trained on {trained_labels}: they must match")
    task = snapshot.task_config()
    rows = load_split(dataset_dir, "test")
    if task.eval.max_examples and len(rows) > task.eval.max_examples:
        return labels, random.Random(task.data.split.seed).sample(rows, task.eval.max_examples), True
    return labels, rows, False


def _production_model(production: Any, snapshot: RunSnapshot) -> ProductionModel | None:
    """A registry version (`tuneloom.registry.ResolvedModel`) as evaluation loads it."""
    if production is None:
        return None
    return ProductionModel(
        path=Path(production.path),
        method=production.lineage.get("method", "lora"),
        base_model_path=production.lineage.get("base_model_path") or snapshot.base_model_path,
    )


def _general_rows(snapshot: RunSnapshot) -> list[dict[str, Any]] | None:
    task = snapshot.task_config()
    if not (kind_of(task.type).forgetting_check and task.eval.forgetting_check):
        return None
    from tuneloom.evaluate.forgetting import general_rows

    return general_rows(task.data.system_prompt)


def _score(ctx: EvalContext, console: Console) -> dict[str, Any]:
    """Run the task kind's evaluation under one progress bar."""
    kind = kind_of(ctx.task.type)
    passes = kind.eval_passes(ctx.production is not None) * (2 if ctx.task.knowledge else 1)  # with and without passages
    total = len(ctx.rows) * passes + 2 * len(ctx.general or [])
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"eval {ctx.task.name}", total=total)
        ticking = EvalContext(**{**ctx.__dict__, "tick": lambda n: progress.advance(bar, n)})
        return kind.evaluate(ticking)


def _baselines(ctx: EvalContext, scored: dict[str, Any], console: Console) -> dict[str, dict[str, Any]]:
    """The kind's cheap baselines on the same test rows (cached in the dataset folder)."""
    started = time.perf_counter()
    found = kind_of(ctx.task.type).baselines(ctx, scored)
    console.print(f"baselines: {', '.join(found)} ({time.perf_counter() - started:.1f} s)")
    return found


def evaluate_run(
    run_dir: str | Path, console: Console | None = None, production: Any = None, test_data: str | Path | None = None
) -> EvalResult:
    """Evaluate a completed training run against its base model and, when given, the production version.

    `production` is a registry version (`tuneloom.registry.ResolvedModel`: path, version, lineage).
    `test_data` is another prepared dataset folder whose test split to use (e.g. a frozen golden set
    or the production version's dataset); by default the run's own test split.
    Writes eval.json and adds `eval` to summary.json.
    """
    console = console or Console(stderr=True)
    run = Path(run_dir)
    if not (run / "summary.json").is_file():
        raise FileNotFoundError(
            f"{run} has no summary.json: the run did not finish (state: {run_state(run)}, see {run / 'status.json'})"
        )
    snapshot = read_snapshot(run)
    task = snapshot.task_config()
    dataset_dir = Path(test_data or snapshot.dataset.path)
    labels, rows, sampled = _test_rows(snapshot, dataset_dir)
    ctx = EvalContext(
        task=task,
        model_dir=run / "model",
        base_path=Path(snapshot.base_model_path),
        precision=snapshot.precision,
        labels=labels,
        rows=rows,
        tick=lambda n: None,
        production=_production_model(production, snapshot),
        general=_general_rows(snapshot),
        train_dir=Path(snapshot.dataset.path),
    )
    started = time.time()
    raw = _score(ctx, console)
    if task.eval.baselines:
        raw["baselines"] = _baselines(ctx, raw, console)
    raw["shipped_baseline"] = snapshot.baseline
    per_example_views(kind_of(task.type), raw, rows)
    shown = task.eval.metrics or list(kind_of(task.type).metrics)
    if "judge_score" in raw["tuned"] and "judge_score" in raw["base"]:
        shown = [*shown, "judge_score"]
    raw.update(
        task=task.name,
        task_type=task.type,
        run=run.name,
        split="test",
        test_dataset=str(dataset_dir),
        n_examples=len(rows),
        sampled=sampled,
        seconds=round(time.time() - started, 1),
        metrics_shown=shown,
        comparison={m: compare(raw, m) for m in shown},
    )
    if production is not None:
        raw["production_version"] = f"{production.name}:{production.version}"
        raw["comparison_production"] = {m: compare(raw, m, reference="production") for m in shown if m in raw["production"]}
    result = EvalResult.model_validate(raw)
    write_eval(run, result)
    summary = read_summary(run)
    summary.eval = EvalSummary(
        split="test", test_dataset=str(dataset_dir), n_examples=len(rows), sampled=sampled, comparison=result.comparison
    )
    write_summary(run, summary)
    return result
