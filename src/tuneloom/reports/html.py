"""Build the HTML report for one or more evaluated runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tuneloom.artifacts import read_eval, read_manifest, read_snapshot, read_summary
from tuneloom.atomic import read_jsonl, write_text_atomic
from tuneloom.config import GateConfig
from tuneloom.reports import plots
from tuneloom.tasks import lower_is_better


def baseline_rows(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (baseline, shown metric) of an eval.json, or per skipped baseline (with its reason)."""
    rows: list[dict[str, Any]] = []
    for name, b in (ev.get("baselines") or {}).items():
        if "skipped" in b:
            rows.append({"name": name, "skipped": b["skipped"]})
            continue
        for metric in [m for m in ev["metrics_shown"] if m in b["metrics"]]:
            value, tuned = b["metrics"][metric], ev["tuned"][metric]
            lead = value - tuned if lower_is_better(metric) else tuned - value
            row = {"name": name, "method": b["method"], "metric": metric, "value": value, "tuned": tuned, "lead": lead}
            rows.append({**row, "ci": b["intervals"].get(metric), "seconds": b["seconds"]})
    return rows


def baselines_verdict(gate: GateConfig, ev: dict[str, Any]) -> dict[str, Any] | None:
    """The run's `gate.beat_baselines` rule checked against this evaluation (None without that rule)."""
    from tuneloom.evaluate.gate import baselines_rule

    rule = gate.beat_baselines
    if rule is None:
        return None
    return {"metric": rule.metric, "margin": rule.margin, **baselines_rule(rule.metric, rule.margin, ev).model_dump()}


def retrieval_view(ev: dict[str, Any], shown: int = 8) -> dict[str, Any] | None:
    """The with/without-retrieval comparison of an eval.json, with the examples retrieval changed most."""
    rag = ev.get("retrieval")
    if not rag:
        return None
    order = [
        s
        for s in ("base", "base+retrieval", "tuned", "tuned+retrieval", "production", "production+retrieval")
        if s in rag["sides"]
    ]
    gain = sorted(rag["examples"], key=lambda e: e["token_f1"]["tuned+retrieval"] - e["token_f1"]["tuned"], reverse=True)
    examples = gain if len(gain) <= shown else gain[: shown - 2] + gain[-2:]  # where retrieval helped most, and hurt
    return {**rag, "order": order, "shown_examples": examples}


def _task_section(run: Path) -> dict[str, Any]:
    snapshot, summary, ev = read_snapshot(run), read_summary(run), read_eval(run).model_dump(mode="json", exclude_none=True)
    manifest = read_manifest(snapshot.dataset.path)
    metrics = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    task = snapshot.task
    for name, c in ev["comparison"].items():
        c["better"] = c["delta"] < 0 if lower_is_better(name) else c["delta"] > 0
    images = [
        plots.loss_curves(metrics, f"{task['name']}: loss"),
        plots.metric_bars(ev["comparison"], "base vs tuned (test split)"),
        plots.deltas_with_intervals(ev["comparison"], "change with 95% interval"),
    ]
    per_class = "example_metric" not in ev and "confusion" in ev["tuned"]  # single-label classes
    section: dict[str, Any] = {
        "name": task["name"],
        "type": task["type"],
        "model": task["model"],
        "method": task["method"]["kind"],
        "run": run.name,
        "dataset_version": snapshot.dataset.version,
        "counts": manifest.result.counts,
        "train": summary.train.model_dump(),
        "eval": ev,
        "plots": images,
        "per_class": per_class,
        "baselines": baseline_rows(ev),
        "baselines_verdict": baselines_verdict(snapshot.task_config().gate, ev),
        "retrieval": retrieval_view(ev),
    }
    if per_class:
        images.append(plots.per_class_f1(ev["labels"], ev["base"], ev["tuned"]))
        images.append(plots.confusion(ev["labels"], ev["tuned"]["confusion"], "tuned: confusion matrix"))
        section["errors"] = [e for e in ev["examples"] if e["tuned"] != e["label"]][:25]
    else:
        images.append(plots.learning_rate(metrics))
        if "example_metric" not in ev:  # generated answers
            section["examples"] = ev["examples"][:12]
    return section


def write_report(runs: list[Path], out: Path, title: str, workspace: Path) -> Path:
    """Write `out/report.html` for the given evaluated runs and return its path."""
    env = Environment(loader=PackageLoader("tuneloom", "templates"), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        title=title,
        generated=time.strftime("%Y-%m-%d %H:%M"),
        workspace=str(workspace),
        tasks=[_task_section(r) for r in runs],
    )
    path = out / "report.html"
    write_text_atomic(path, html)
    return path


def render_to(path: Path, template: str, **context: Any) -> Path:
    """Render one of Tuneloom's report templates into `path` (atomically)."""
    env = Environment(loader=PackageLoader("tuneloom", "templates"), autoescape=select_autoescape(["html", "j2"]))
    write_text_atomic(path, env.get_template(template).render(generated=time.strftime("%Y-%m-%d %H:%M"), **context))
    return path
