"""What a turn of the loop changed and why: the summary, its exit code, and the held-out feedback rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneloom.artifacts import (
    IterateState,
    IterateSummary,
    MetricChange,
    RuleResult,
    read_eval,
    read_feedback_eval,
    read_gate,
    read_manifest,
)
from tuneloom.config import Project, TaskConfig
from tuneloom.registry.lookup import registry_for
from tuneloom.tasks import lower_is_better


def nothing_new(task: str, new: int, minimum: int, exit_code: int) -> IterateSummary:
    return IterateSummary(
        task=task,
        outcome="nothing_new",
        exit_code=exit_code,
        reason=f"{new} accepted feedback row(s) not used yet; iterate.min_new_rows is {minimum}: nothing new to learn from",
        new_rows=new,
        min_new_rows=minimum,
    )


def changes(result: dict[str, Any], metrics: list[str]) -> list[MetricChange]:
    """Each metric of the new version (tuned) against production, or base when nothing is in production."""
    reference = "production" if result.get("production") else "base"
    ref, tuned = result.get(reference) or {}, result.get("tuned") or {}
    return [
        MetricChange(metric=m, reference=reference, before=float(ref[m]), after=float(tuned[m]))
        for m in metrics
        if isinstance(ref.get(m), int | float) and isinstance(tuned.get(m), int | float)
    ]


def feedback_rule(run_dir: Path, metric: str, gain: float) -> RuleResult:
    """The new version must beat production (or base) on the held-out feedback rows by `gain`."""
    if not (run_dir / "feedback_eval.json").is_file():
        return RuleResult(
            rule=f"feedback gain {metric}", value=0.0, limit=gain, passed=False, detail="no held-out feedback rows to measure on"
        )
    found = changes(read_feedback_eval(run_dir).model_dump(), [metric])
    if not found:
        return RuleResult(rule=f"feedback gain {metric}", value=0.0, limit=gain, passed=False, detail=f"{metric} not measured")
    c = found[0]
    better = c.before - c.after if lower_is_better(metric) else c.after - c.before
    return RuleResult(
        rule=f"feedback gain {metric}",
        value=better,
        limit=gain,
        passed=better >= gain,
        detail=f"held-out feedback {metric}: {c.before:.4f} ({c.reference}) -> {c.after:.4f}, gain {better:+.4f}, "
        f"must be at least {gain:+.4f}",
    )


def _outcome(state: IterateState, dry_run: bool, canary: int | None) -> tuple[str, int, str]:
    if not state.gate_passed:
        return "gate_failed", 1, f"version {state.version} failed the gate: not promoted; its feedback stays for the next turn"
    if dry_run:
        return "dry_run", 0, f"version {state.version} passed the gate; --dry-run: not promoted, feedback not marked used"
    if canary == state.version:
        return "canary", 0, f"version {state.version} passed the gate and is the canary now (`tuneloom monitor` decides)"
    return "promoted", 0, f"version {state.version} passed the gate and is production now"


def finished_summary(project: Project, task: TaskConfig, state: IterateState, dry_run: bool) -> IterateSummary:
    """The summary of a completed turn, from the run's eval, feedback eval and gate files."""
    assert state.run_dir is not None and state.version is not None
    run_dir = Path(state.run_dir)
    golden = read_eval(run_dir)
    metrics = list(golden.metrics_shown)
    holdout = changes(read_feedback_eval(run_dir).model_dump(), metrics) if (run_dir / "feedback_eval.json").is_file() else []
    gate = read_gate(run_dir)
    registry = registry_for(project)
    name = task.registry_name or task.name
    outcome, code, reason = _outcome(state, dry_run, registry.canary(name))
    counts = read_manifest(state.dataset).result.counts
    parent = read_manifest(state.parent_dataset).result.counts
    return IterateSummary(
        task=task.name,
        outcome=outcome,
        exit_code=code,
        reason=reason,
        new_rows=len(state.feedback_ids),
        min_new_rows=task.iterate.min_new_rows,
        parent_dataset=state.parent_dataset,
        dataset=state.dataset,
        feedback_ids=state.feedback_ids,
        held_out_ids=state.held_out_ids,
        training_rows={"task": parent["train"], "feedback": counts["train"] - parent["train"], "total": counts["train"]},
        start_from="production" if golden.production_version and task.iterate.start_from == "production" else "base",
        run_dir=state.run_dir,
        version=state.version,
        production_before=state.production_before,
        production_after=registry.production(name),
        golden=changes(golden.model_dump(), metrics),
        feedback_slice=holdout,
        gate_failures=[r.detail or r.rule for r in gate.rules if not r.passed],
    )


def summary_lines(s: IterateSummary) -> list[str]:
    """The summary as a few lines for the terminal."""
    lines = [f"{s.task}: {s.outcome} (exit {s.exit_code}): {s.reason}"]
    if s.outcome == "nothing_new":
        return lines
    rows = s.training_rows
    lines.append(
        f"data: {s.new_rows} feedback rows -> {rows.get('feedback', 0)} training rows added to {rows.get('task', 0)} "
        f"({len(s.held_out_ids)} held out); dataset {Path(s.dataset or '').name}; trained from {s.start_from}"
    )
    lines.append(f"version {s.version}; production {s.production_before} -> {s.production_after}")
    for title, found in (("golden test set", s.golden), ("held-out feedback", s.feedback_slice)):
        if found:
            shown = ", ".join(f"{c.metric} {c.before:.3f}->{c.after:.3f}" for c in found)
            lines.append(f"{title} (vs {found[0].reference}): {shown}")
    lines.extend(f"gate: {f}" for f in s.gate_failures)
    return lines
