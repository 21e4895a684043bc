"""`iterate_task`: one turn of the loop, from accepted feedback to a promoted (or refused) version.

The turn moves through stages recorded in `iterate/<task>/state.json` (dataset -> trained ->
evaluated -> gated -> registered -> marked -> done), each written after its work is complete, so a
run killed at any point resumes where it stopped: an unfinished training run is started again,
evaluation and gate are redone, a registration is found again by its run folder. Feedback is
marked used only after the version that used it is registered, and production moves last, in one
alias change. The stages reuse the loop's own functions (data, train, evaluate, gate, registry).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from tuneloom.artifacts import (
    GateRecord,
    IterateState,
    IterateSummary,
    read_eval,
    read_iterate_state,
    write_feedback_eval,
    write_gate,
    write_iterate_state,
    write_iterate_summary,
)
from tuneloom.config import GateConfig, Project, TaskConfig
from tuneloom.data import prepare_dataset
from tuneloom.evaluate import evaluate_run
from tuneloom.evaluate.gate import check_gate, choose_gate_rules
from tuneloom.iterate.dataset import build_next_dataset
from tuneloom.iterate.lock import task_lock
from tuneloom.iterate.source import FeedbackSource, ReviewedFeedback
from tuneloom.iterate.summary import feedback_rule, finished_summary, nothing_new
from tuneloom.registry import ModelRegistry, ResolvedModel
from tuneloom.registry.history import utc_now
from tuneloom.registry.lookup import registry_for
from tuneloom.tasks import kind_of
from tuneloom.train import train_task

EXIT_PROMOTED, EXIT_GATE_FAILED, EXIT_NOTHING_NEW, EXIT_RETRY = 0, 1, 3, 4


def iterate_task(
    project: Project,
    task_name: str | None = None,
    *,
    dry_run: bool = False,
    wait_s: float = 0.0,
    console: Console | None = None,
    source: FeedbackSource | None = None,
) -> IterateSummary:
    """One turn of the feedback loop for a task; the summary says what changed, why, and the exit code."""
    console = console or Console(stderr=True)
    task = project.config.task(task_name)
    source = source or ReviewedFeedback(project, task.name)
    with task_lock(project.workspace, task.name, wait_s):
        state = read_iterate_state(project.workspace, task.name)
        resumed = state is not None and state.stage != "done"
        if state is None or not resumed:
            begun = _begin(project, task, source, console)
            if isinstance(begun, IterateSummary):
                _save(project, begun)
                return begun
            state = begun
        else:
            console.print(f"[yellow]resuming the unfinished turn of {task.name} from stage '{state.stage}'")
        summary = _advance(project, task, state, source, dry_run, console)
        summary.resumed = resumed
        _save(project, summary)
        return summary


def _save(project: Project, summary: IterateSummary) -> None:
    write_iterate_summary(project.workspace, summary, time.strftime("%Y%m%d-%H%M%S"))


def _begin(project: Project, task: TaskConfig, source: FeedbackSource, console: Console) -> IterateState | IterateSummary:
    """The new dataset version, or a summary when there is too little new feedback to learn from."""
    settings = task.iterate
    contribution = source.contribution()
    if len(contribution.rows) < settings.min_new_rows:
        return nothing_new(task.name, len(contribution.rows), settings.min_new_rows, EXIT_NOTHING_NEW)
    parent = prepare_dataset(project, task.name, log=lambda m: console.print(f"  data: {m}"))
    folder, holdout = build_next_dataset(project.workspace, task, Path(parent.path), contribution, settings)
    registry = registry_for(project)
    name = task.registry_name or task.name
    production = registry.production(name) if registry.has_model(name) else None
    console.print(
        f"{task.name}: {len(contribution.rows)} feedback rows to train on, {len(contribution.held_out)} held out; "
        f"dataset {folder.name}"
    )
    state = IterateState(
        task=task.name,
        started=utc_now(),
        stage="dataset",
        parent_dataset=parent.path,
        dataset=str(folder),
        holdout=str(holdout) if holdout else None,
        contribution=contribution.version,
        feedback_ids=list(contribution.feedback_ids),
        held_out_ids=list(contribution.held_out_ids),
        production_before=production,
    )
    write_iterate_state(project.workspace, state)
    return state


def _advance(
    project: Project, task: TaskConfig, state: IterateState, source: FeedbackSource, dry_run: bool, console: Console
) -> IterateSummary:
    """Every stage from where `state` stands to the end; the state file follows each one."""
    registry = registry_for(project)
    name = task.registry_name or task.name
    production = registry.resolve(f"{name}:{state.production_before}") if state.production_before else None
    steps = {
        "dataset": lambda: _train(project, task, state, production, console),
        "trained": lambda: _evaluate(state, production, console),
        "evaluated": lambda: _gate(project, task, state),
        "gated": lambda: _register(registry, name, state),
        "registered": lambda: _mark(source, name, state, dry_run),
        "marked": lambda: _promote(task, registry, name, state),
    }
    while state.stage in steps:
        state = steps[state.stage]()
        write_iterate_state(project.workspace, state)
    return finished_summary(project, task, state, dry_run)


def _train(
    project: Project, task: TaskConfig, state: IterateState, production: ResolvedModel | None, console: Console
) -> IterateState:
    """A training run on the new dataset version, from production's weights or from the base."""
    start = production.path if production is not None and task.iterate.start_from == "production" else None
    if state.run_dir:  # killed while training: that run is abandoned, a new one starts
        console.print(f"[yellow]training run {Path(state.run_dir).name} did not finish; training again")
    result = train_task(project, task.name, state.dataset, console, init_from=start)
    return state.model_copy(update={"stage": "trained", "run_dir": result.run_dir})


def _evaluate(state: IterateState, production: ResolvedModel | None, console: Console) -> IterateState:
    """Scores on the held-out feedback rows (feedback_eval.json), then on the golden test split (eval.json)."""
    assert state.run_dir is not None  # set by the trained stage
    if state.holdout:
        console.print("evaluating on the held-out feedback rows")
        write_feedback_eval(state.run_dir, evaluate_run(state.run_dir, console, production=production, test_data=state.holdout))
    console.print("evaluating on the golden test set")
    evaluate_run(state.run_dir, console, production=production)
    return state.model_copy(update={"stage": "evaluated"})


def golden_gate(project: Project, task: TaskConfig, run_dir: Path) -> tuple[GateConfig, str]:
    """The task's gate rules, plus: no golden metric may drop against production by more than golden_max_drop."""
    settings = task.iterate
    rules = choose_gate_rules(run_dir, project)
    max_drop = dict(rules.gate.max_drop)
    for metric in settings.golden_metrics or [kind_of(task.type).metrics[0]]:
        max_drop[metric] = min(max_drop.get(metric, settings.golden_max_drop), settings.golden_max_drop)
    return rules.gate.model_copy(update={"max_drop": max_drop}), f"{rules.source} + iterate"


def _gate(project: Project, task: TaskConfig, state: IterateState) -> IterateState:
    """The gate on eval.json (golden) and, when configured, the gain on the held-out feedback rows."""
    assert state.run_dir is not None
    run_dir = Path(state.run_dir)
    gate, source = golden_gate(project, task, run_dir)
    result = check_gate(gate, read_eval(run_dir).model_dump())
    rules = list(result.rules)
    if task.iterate.min_feedback_gain is not None:
        rules.append(feedback_rule(run_dir, kind_of(task.type).metrics[0], task.iterate.min_feedback_gain))
    passed = all(r.passed for r in rules)
    write_gate(run_dir, GateRecord(passed=passed, reference=result.reference, rules=rules, rules_from=source))
    return state.model_copy(update={"stage": "gated", "gate_passed": passed})


def _register(registry: ModelRegistry, name: str, state: IterateState) -> IterateState:
    """The run as a new version with its feedback lineage (found again if a killed run had registered it)."""
    assert state.run_dir is not None
    run_dir = str(Path(state.run_dir).resolve())
    known = [v for v in registry.list_versions(name) if v.lineage.get("run_dir") == run_dir] if registry.has_model(name) else []
    version = known[0].version if known else registry.register_run(run_dir, name).version
    registry.set_version_tags(
        name,
        version,
        {
            "feedback_ids": compact_ids(state.feedback_ids),
            "feedback_held_out_ids": compact_ids(state.held_out_ids),
            "feedback_contribution": state.contribution,
            "parent_dataset": Path(state.parent_dataset).name,
        },
    )
    return state.model_copy(update={"stage": "registered", "version": version})


def _mark(source: FeedbackSource, name: str, state: IterateState, dry_run: bool) -> IterateState:
    """Feedback used by a version that will ship is marked used; otherwise it stays for the next turn."""
    if not state.gate_passed or dry_run:
        return state.model_copy(update={"stage": "done"})
    source.mark_used([*state.feedback_ids, *state.held_out_ids], f"{name}:{state.version}")
    return state.model_copy(update={"stage": "marked"})


def _promote(task: TaskConfig, registry: ModelRegistry, name: str, state: IterateState) -> IterateState:
    """Production (or the canary alias) moves to the new version: the turn's one visible change."""
    assert state.version is not None
    reason = f"tuneloom iterate: {len(state.feedback_ids)} feedback rows, gate passed (dataset {Path(state.dataset).name})"
    if task.iterate.promote_to == "canary" and registry.production(name) not in (None, state.version):
        if registry.canary(name) != state.version:
            registry.start_canary(name, state.version, reason=reason)
    else:
        registry.promote(name, state.version, reason=reason)
    return state.model_copy(update={"stage": "done"})


def compact_ids(ids: list[int], limit: int = 4000) -> str:
    """Ids as ranges (`1-40,45`), cut to fit a registry tag (the dataset's feedback.jsonl has them all)."""
    spans: list[list[int]] = []
    for i in sorted(set(ids)):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return text if len(text) <= limit else text[:limit].rpartition(",")[0] + f",... ({len(set(ids))} ids)"
