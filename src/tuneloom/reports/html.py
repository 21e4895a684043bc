"""Build the HTML report for one or more evaluated runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from tuneloom.config import LOWER_IS_BETTER
from tuneloom.reports import plots
from tuneloom.workspace import read_jsonl, write_text_atomic



def _task_section(run: Path) -> dict[str, Any]:
    snapshot = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    ev = json.loads((run / "eval.json").read_text())
    manifest = json.loads((Path(snapshot["dataset"]["path"]) / "manifest.json").read_text())
    metrics = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
    task = snapshot["task"]
    for name, c in ev["comparison"].items():
        c["better"] = c["delta"] < 0 if name in LOWER_IS_BETTER else c["delta"] > 0
    images = [
        plots.loss_curves(metrics, f"{task['name']}: loss"),
        plots.metric_bars(ev["comparison"], "base vs tuned (test split)"),
        plots.deltas_with_intervals(ev["comparison"], "change with 95% interval"),
    ]
    section: dict[str, Any] = {
        "name": task["name"], "type": task["type"], "model": task["model"], "method": task["method"]["kind"],
        "run": run.name, "dataset_version": snapshot["dataset"]["version"], "counts": manifest["result"]["counts"],
        "train": summary["train"], "eval": ev, "plots": images,
    }
    if task["type"] == "classification":
        images.append(plots.per_class_f1(ev["labels"], ev["base"], ev["tuned"]))
        images.append(plots.confusion(ev["labels"], ev["tuned"]["confusion"], "tuned: confusion matrix"))
        section["errors"] = [e for e in ev["examples"] if e["tuned"] != e["label"]][:25]
    else:
        images.append(plots.learning_rate(metrics))
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


def render_page(template: str, out: Path, **context: Any) -> Path:
    """Render a template from tuneloom/templates into `out` (atomically) and return its path."""
    env = Environment(loader=PackageLoader("tuneloom", "templates"), autoescape=select_autoescape(["html", "j2"]))
    write_text_atomic(out, env.get_template(template).render(generated=time.strftime("%Y-%m-%d %H:%M"), **context))
    return out
