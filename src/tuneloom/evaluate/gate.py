"""The regression gate: rules from the project file checked against a run's eval.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from tuneloom.artifacts import GateRecord, GateResult, RuleResult, read_eval, read_snapshot, write_gate
from tuneloom.config import GateConfig, Project
from tuneloom.tasks import lower_is_better

__all__ = ["GateResult", "RuleResult", "baselines_rule", "check_gate", "choose_gate_rules", "gate_run"]


def gate_run(run_dir: Path, gate: GateConfig, rules_from: str) -> GateResult:
    """Check the run's eval.json and record the verdict in the run's gate.json."""
    result = check_gate(gate, read_eval(run_dir).model_dump())
    write_gate(run_dir, GateRecord(**result.model_dump(), rules_from=rules_from))
    return result


def _drop(metric: str, reference: float, tuned: float) -> float:
    """How much worse tuned is than reference (positive = worse), in the metric's own units."""
    return tuned - reference if lower_is_better(metric) else reference - tuned


def _metric_rules(
    gate: GateConfig, reference: str, ref: dict[str, Any], tuned: dict[str, Any], side: str = "tuned"
) -> list[RuleResult]:
    """`min` and `max_drop` rules for `side` (what the details call the tuned model's answers); a metric missing
    on either side fails its own rule."""
    missing = [m for m in [*gate.min, *gate.max_drop] if m not in tuned or m not in ref]
    rules = [
        RuleResult(
            rule=f"measured {m}",
            value=0.0,
            limit=0.0,
            passed=False,
            detail=f"{m} was not measured for {side} and {reference} (judge not configured?)",
        )
        for m in dict.fromkeys(missing)
    ]
    for metric, limit in gate.min.items():
        if metric in missing:
            continue
        value = float(tuned[metric])
        ok = value <= limit if lower_is_better(metric) else value >= limit
        bound = "at most" if lower_is_better(metric) else "at least"
        rules.append(
            RuleResult(
                rule=f"min {metric}",
                value=value,
                limit=limit,
                passed=ok,
                detail=f"{side} {metric} {value:.4f}, must be {bound} {limit:.4f}",
            )
        )
    for metric, limit in gate.max_drop.items():
        if metric in missing:
            continue
        before, after = float(ref[metric]), float(tuned[metric])
        drop = _drop(metric, before, after)
        rules.append(
            RuleResult(
                rule=f"max drop {metric}",
                value=drop,
                limit=limit,
                passed=drop <= limit,
                detail=f"{reference} {before:.4f} -> {side} {after:.4f}: drop {drop:+.4f}, allowed {limit:.4f}",
            )
        )
    return rules


def _class_rules(limit: float, reference: str, ref: dict[str, Any], tuned: dict[str, Any]) -> list[RuleResult]:
    rules = []
    for label, scores in tuned["per_class"].items():
        before = ref["per_class"][label]["f1"]
        drop = before - scores["f1"]
        rules.append(
            RuleResult(
                rule=f"max class F1 drop {label}",
                value=drop,
                limit=limit,
                passed=drop <= limit,
                detail=f"{reference} F1 {before:.3f} -> tuned {scores['f1']:.3f} (n={scores['support']})",
            )
        )
    return rules


def _latency_rule(limit: float, tuned: dict[str, Any]) -> RuleResult:
    latency = float(tuned["latency_ms_per_example"])
    return RuleResult(
        rule="max latency",
        value=latency,
        limit=limit,
        passed=latency <= limit,
        detail=f"{latency:.1f} ms per test example, budget {limit:.1f} ms",
    )


def _forgetting_rule(limit: float, forgetting: dict[str, Any] | None) -> RuleResult:
    if forgetting is None:
        return RuleResult(
            rule="max forgetting",
            value=0.0,
            limit=limit,
            passed=False,
            detail="no forgetting check in this evaluation; run `tuneloom eval` again",
        )
    drop = float(forgetting["token_f1_drop"])
    return RuleResult(
        rule="max forgetting",
        value=drop,
        limit=limit,
        passed=drop <= limit,
        detail=f"general-ability token F1 {forgetting['base']['token_f1']:.4f} -> {forgetting['tuned']['token_f1']:.4f} "
        f"on {forgetting['n']} items: drop {drop:+.4f}, allowed {limit:.4f}",
    )


def baselines_rule(metric: str, margin: float, result: dict[str, Any]) -> RuleResult:
    """The tuned model must beat the best cheap baseline on `metric` by at least `margin`; the detail names the
    winner. A lead inside the margin, a tie included (even at margin 0: "beat" is strict), fails: a baseline
    about as good as the tuned model is cheaper to ship, so the detail recommends the baseline."""
    from tuneloom.evaluate.baselines import best_baseline
    from tuneloom.evaluate.ship import SHIPPABLE

    rule = f"beat baselines {metric}"
    itself = result.get("shipped_baseline")  # a shipped baseline must beat the other baselines
    best = best_baseline(result.get("baselines"), metric, exclude=itself)
    if best is None or metric not in result["tuned"]:
        detail = f"no baseline measured {metric} in this evaluation: set eval.baselines: true and run `tuneloom eval` again"
        return RuleResult(rule=rule, value=0.0, limit=margin, passed=False, detail=detail)
    name, value = best
    tuned = float(result["tuned"][metric])
    lead = round(-_drop(metric, value, tuned), 9)  # how much better tuned is than the best baseline (float noise off)
    passed = lead > 0 and lead >= margin
    head = f"tuned {tuned:.4f} vs best baseline {name} {value:.4f}: lead {lead:+.4f}, needed {margin:+.4f}"
    if passed:
        return RuleResult(rule=rule, value=lead, limit=margin, passed=True, detail=head)
    how = " (`tuneloom ship-baseline RUN`)" if name in SHIPPABLE else ""
    ship = f"ship the baseline '{name}' instead{how}, or improve the tuned model"
    if lead < 0:
        verdict = f"the baseline is better: {ship}"
    else:
        verdict = f"{'a tie' if lead == 0 else 'within the margin'}: the baseline is about as good and cheaper, so {ship}"
    return RuleResult(rule=rule, value=lead, limit=margin, passed=False, detail=f"{head}; {verdict}")


def check_gate(gate: GateConfig, result: dict[str, Any]) -> GateResult:
    """Evaluate every rule; `result` is an eval.json (base, tuned and, when present, production).

    A task served with a knowledge base answers every request from retrieved passages, so its `min` and
    `max_drop` rules judge the answers users get: tuned + retrieval against production (or base) + retrieval."""
    reference = "production" if result.get("production") else "base"
    ref, tuned = result[reference], result["tuned"]
    sides = (result.get("retrieval") or {}).get("sides") or {}
    if "tuned+retrieval" in sides and f"{reference}+retrieval" in sides:
        rules = _metric_rules(
            gate, f"{reference}+retrieval", sides[f"{reference}+retrieval"], sides["tuned+retrieval"], "tuned+retrieval"
        )
        reference = f"{reference}+retrieval"
    else:
        rules = _metric_rules(gate, reference, ref, tuned)
    if gate.max_class_f1_drop is not None:
        rules += _class_rules(gate.max_class_f1_drop, reference, ref, tuned)
    if gate.max_latency_ms is not None:
        rules.append(_latency_rule(gate.max_latency_ms, tuned))
    if gate.max_forgetting is not None:
        rules.append(_forgetting_rule(gate.max_forgetting, result.get("forgetting")))
    if gate.beat_baselines is not None:
        rules.append(baselines_rule(gate.beat_baselines.metric, gate.beat_baselines.margin, result))
    return GateResult(passed=all(r.passed for r in rules), reference=reference, rules=rules)


class GateRules(NamedTuple):
    task: str
    gate: GateConfig
    source: str  # where the rules come from: the project file's path, or "run snapshot"


def choose_gate_rules(run_dir: Path, project: Project | None = None) -> GateRules:
    """The rules to gate a run by: `project`'s current rules for the run's task when it has that task
    (rules may be tightened after training), else the rules the run was trained with (its snapshot)."""
    task = read_snapshot(run_dir).task_config()
    if project is not None and task.name in project.config.task_names():
        return GateRules(task.name, project.config.task(task.name).gate, str(project.path))
    return GateRules(task.name, task.gate, "run snapshot")
