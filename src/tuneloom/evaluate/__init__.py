"""`evaluate_run`: base vs tuned on the held-out test split, written to the run folder."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tuneloom.config import TASK_METRICS, TaskConfig
from tuneloom.data import load_split
from tuneloom.errors import DataError
from tuneloom.workspace import run_state, write_json_atomic

__all__ = ["evaluate_run"]


def _judge(result: dict[str, Any], config: Any) -> dict[str, Any]:
    """LLM-as-judge mean scores (1-5) of each side's answers; added as the metric `judge_score`."""
    from tuneloom.evaluate.judge import judge_from_config, judge_summary

    out = {}
    for side in ("base", "tuned", "production"):
        if side == "production" and "production" not in result:
            continue
        items = [{"question": e["question"], "reference": e["reference"], "answer": e[side]} for e in result["examples"]]
        out[side] = judge_summary(judge_from_config(items, config))
        if out[side]["mean"] is not None:
            result[side]["judge_score"] = out[side]["mean"]
    return out


def _compare(result: dict[str, Any], metric: str, reference: str = "base") -> dict[str, float]:
    """One metric: reference and tuned values, their difference and its 95% interval."""
    row = {reference: result[reference][metric], "tuned": result["tuned"][metric]}
    row["delta"] = row["tuned"] - row[reference]
    intervals = result.get("intervals" if reference == "base" else f"intervals_{reference}", {})
    if metric in intervals:
        row["ci_low"], row["ci_high"] = intervals[metric]
    return row


def _per_example_views(task_type: str, result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Add `slices` (results per slice value or label) and `improved` / `worsened` example lists."""
    examples = result["examples"]
    if "example_metric" in result:  # ner, preference, pretrain: one score per example and model
        scored = sorted(examples, key=lambda e: e["score_tuned"] - e["score_base"])
        result["improved"] = [e for e in reversed(scored) if e["score_tuned"] > e["score_base"]][:10]
        result["worsened"] = [e for e in scored if e["score_tuned"] < e["score_base"]][:10]
        metric, score = result["example_metric"], lambda e, side: e[f"score_{side}"]
    elif task_type == "chat_sft":
        for e in examples:
            e["delta"] = round(e["token_f1_tuned"] - e["token_f1_base"], 4)
        scored = sorted(examples, key=lambda e: e["delta"])
        result["improved"] = [e for e in reversed(scored) if e["delta"] > 0][:10]
        result["worsened"] = [e for e in scored if e["delta"] < 0][:10]
        metric, score = "token_f1", lambda e, side: e[f"token_f1_{side}"]
    else:
        result["improved"] = [e for e in examples if e["tuned"] == e["label"] != e["base"]][:15]
        result["worsened"] = [e for e in examples if e["base"] == e["label"] != e["tuned"]][:15]
        metric, score = "accuracy", lambda e, side: float(e[side] == e["label"])
    keys = [r.get("slice") or (r.get("label") if task_type == "classification" else None) for r in rows]
    if not any(keys):
        result["slices"] = {}
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, e in zip(keys, examples):
        groups.setdefault(str(key), []).append(e)
    result["slices"] = {
        key: {
            "n": len(items),
            "metric": metric,
            "base": sum(score(e, "base") for e in items) / len(items),
            "tuned": sum(score(e, "tuned") for e in items) / len(items),
        }
        for key, items in sorted(groups.items())
    }


def _evaluate_new_task(task: TaskConfig, model_dir: Path, base_path: Path, precision: str, labels: list[str] | None,
                       rows: list[dict[str, Any]], tick: Any, prod: Any) -> dict[str, Any]:
    """NER, preference and pretrain evaluation (each module scores base, tuned and production alike)."""
    kind, size, remote = task.method.kind, task.eval.batch_size, task.trust_remote_code
    if task.type == "ner":
        from tuneloom.evaluate.ner import evaluate_ner

        return evaluate_ner(model_dir, base_path, kind, labels or [], rows, task.train.max_length, size, remote, tick, prod)
    if task.type == "preference":
        from tuneloom.evaluate.preference import evaluate_preference

        return evaluate_preference(model_dir, base_path, kind, precision, rows, task.train.beta, task.train.max_length,
                                   size, remote, tick, prod)
    from tuneloom.evaluate.pretrain import evaluate_pretrain

    return evaluate_pretrain(model_dir, base_path, kind, precision, rows, task.train.max_length, size, remote, tick, prod)


def evaluate_run(
    run_dir: str | Path, console: Console | None = None, production: Any = None, test_data: str | Path | None = None
) -> dict[str, Any]:
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
    snapshot = yaml.safe_load((run / "config.yaml").read_text())
    task = TaskConfig.model_validate(snapshot["task"])
    dataset_dir = Path(test_data or snapshot["dataset"]["path"])
    trained_labels = json.loads((Path(snapshot["dataset"]["path"]) / "manifest.json").read_text())["result"]["labels"]
    labels = json.loads((dataset_dir / "manifest.json").read_text())["result"]["labels"]
    if labels != trained_labels:
        raise DataError(f"{dataset_dir} has labels {labels}, the run was trained on {trained_labels}: they must match")
    rows = load_split(dataset_dir, "test")
    sampled = False
    if task.eval.max_examples and len(rows) > task.eval.max_examples:
        rows = random.Random(task.data.split.seed).sample(rows, task.eval.max_examples)
        sampled = True
    base_path, model_dir = Path(snapshot["base_model_path"]), run / "model"
    general = None
    if task.type == "chat_sft" and task.eval.forgetting_check:
        from tuneloom.evaluate.forgetting import general_rows

        general = general_rows(task.data.system_prompt)
    passes = {"chat_sft": 2, "classification": 1, "ner": 2, "preference": 4, "pretrain": 2}[task.type]
    passes += (2 if task.type == "preference" else 1) * (production is not None)
    prod = None
    if production is not None:
        prod = SimpleNamespace(path=Path(production.path), method=production.lineage.get("method", "lora"),
                               base_model_path=production.lineage.get("base_model_path") or str(snapshot["base_model_path"]))
    started = time.time()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(f"eval {task.name}", total=len(rows) * passes + 2 * len(general or []))

        def tick(n: int) -> None:
            progress.advance(bar, n)

        if task.type == "chat_sft":
            from tuneloom.evaluate.chat import evaluate_chat

            result = evaluate_chat(
                model_dir, base_path, task.method.kind, snapshot["precision"], rows, task.train.max_length,
                task.eval.max_new_tokens, task.eval.batch_size, task.trust_remote_code, tick, prod, general,
            )
            if task.eval.judge:
                result["judge"] = _judge(result, task.eval.judge)
        elif task.type in ("ner", "preference", "pretrain"):
            result = _evaluate_new_task(task, model_dir, base_path, snapshot["precision"], labels, rows, tick, prod)
        elif task.data.multi_label:
            from tuneloom.evaluate.classify import evaluate_multilabel

            result = evaluate_multilabel(
                model_dir, base_path, task.method.kind, labels, rows, task.label_descriptions or {},
                task.train.max_length, task.eval.batch_size, task.trust_remote_code, tick, prod,
            )
        else:
            from tuneloom.evaluate.classify import evaluate_classification

            result = evaluate_classification(
                model_dir, base_path, task.method.kind, labels, rows, task.label_descriptions or {},
                task.train.max_length, task.eval.batch_size, task.trust_remote_code, tick, prod,
            )
    _per_example_views(task.type, result, rows)
    shown = task.eval.metrics or list(TASK_METRICS[task.type])
    if "judge_score" in result["tuned"] and "judge_score" in result["base"]:
        shown = [*shown, "judge_score"]
    result.update(
        task=task.name,
        task_type=task.type,
        run=run.name,
        split="test",
        test_dataset=str(dataset_dir),
        n_examples=len(rows),
        sampled=sampled,
        seconds=round(time.time() - started, 1),
        metrics_shown=shown,
        comparison={m: _compare(result, m) for m in shown},
    )
    if production is not None:
        result["production_version"] = f"{production.name}:{production.version}"
        result["comparison_production"] = {
            m: _compare(result, m, reference="production") for m in shown if m in result["production"]
        }
    write_json_atomic(run / "eval.json", result)
    summary = json.loads((run / "summary.json").read_text())
    summary["eval"] = {k: result[k] for k in ("split", "test_dataset", "n_examples", "sampled", "comparison")}
    write_json_atomic(run / "summary.json", summary)
    return result
