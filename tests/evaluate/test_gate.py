"""The regression gate: each rule, drops against base or production, and the CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneloom.cli import app
from tuneloom.config import GateConfig, parse_project
from tuneloom.errors import ProjectFileError
from tuneloom.evaluate.gate import check_gate


def _cls(acc: float, f1s: dict[str, float], latency: float = 5.0) -> dict:
    return {
        "accuracy": acc,
        "macro_f1": sum(f1s.values()) / len(f1s),
        "weighted_f1": acc,
        "per_class": {k: {"precision": v, "recall": v, "f1": v, "support": 4} for k, v in f1s.items()},
        "latency_ms_per_example": latency,
    }


BASE = _cls(0.50, {"a": 0.5, "b": 0.5})
TUNED = _cls(0.80, {"a": 0.9, "b": 0.6})


def test_min_rules_pass_and_fail_with_numbers():
    result = check_gate(GateConfig(min={"accuracy": 0.75, "macro_f1": 0.8}), {"base": BASE, "tuned": TUNED})
    assert [r.passed for r in result.rules] == [True, False]  # macro F1 = (0.9 + 0.6) / 2 = 0.75 < 0.8
    assert not result.passed and result.reference == "base"
    assert "0.7500" in result.rules[1].detail and "at least 0.8000" in result.rules[1].detail


def test_lower_is_better_metrics_flip_the_direction():
    base, tuned = {"loss": 3.0}, {"loss": 2.5}
    result = check_gate(GateConfig(min={"loss": 2.6}, max_drop={"loss": 0.0}), {"base": base, "tuned": tuned})
    assert result.passed  # loss 2.5 <= 2.6, and it went down (drop = 2.5 - 3.0 = -0.5)
    worse = check_gate(GateConfig(max_drop={"loss": 0.1}), {"base": base, "tuned": {"loss": 3.2}})
    assert not worse.passed and worse.rules[0].value == pytest.approx(0.2)


def test_drops_are_measured_against_production_when_there_is_one():
    production = _cls(0.85, {"a": 0.9, "b": 0.8})
    result = check_gate(
        GateConfig(max_drop={"accuracy": 0.02}, max_class_f1_drop=0.1), {"base": BASE, "tuned": TUNED, "production": production}
    )
    assert result.reference == "production"
    by_rule = {r.rule: r for r in result.rules}
    assert by_rule["max drop accuracy"].value == pytest.approx(0.05) and not by_rule["max drop accuracy"].passed
    assert by_rule["max class F1 drop a"].passed  # 0.9 -> 0.9
    assert not by_rule["max class F1 drop b"].passed  # 0.8 -> 0.6 drops 0.2 > 0.1


def test_a_task_served_with_retrieval_is_gated_on_its_answers_with_retrieval():
    chat = {"base": {"token_f1": 0.15, "loss": 3.2}, "tuned": {"token_f1": 0.19, "loss": 2.9}}
    sides = {
        "base+retrieval": {"token_f1": 0.21, "loss": 2.2},
        "tuned+retrieval": {"token_f1": 0.33, "loss": 1.8},
        "production+retrieval": {"token_f1": 0.35, "loss": 1.9},
    }
    gate = GateConfig(min={"token_f1": 0.2}, max_drop={"token_f1": 0.0, "loss": 0.0})
    assert not check_gate(gate, chat).passed  # alone, tuned token F1 0.19 is under 0.2
    served = check_gate(gate, {**chat, "retrieval": {"sides": sides}})
    assert served.passed and served.reference == "base+retrieval"
    assert served.rules[0].detail == "tuned+retrieval token_f1 0.3300, must be at least 0.2000"
    production = {"token_f1": 0.2, "loss": 3.0}
    against = check_gate(gate, {**chat, "production": production, "retrieval": {"sides": sides}})
    assert against.reference == "production+retrieval" and not against.passed  # 0.35 -> 0.33 with retrieval
    assert "production+retrieval 0.3500 -> tuned+retrieval 0.3300" in against.rules[1].detail


def test_latency_budget():
    assert not check_gate(GateConfig(max_latency_ms=4.0), {"base": BASE, "tuned": TUNED}).passed
    assert check_gate(GateConfig(max_latency_ms=6.0), {"base": BASE, "tuned": TUNED}).passed


def test_no_rules_passes_with_no_rows():
    result = check_gate(GateConfig(), {"base": BASE, "tuned": TUNED})
    assert result.passed and result.rules == []


PROJECT = """
project: p
tasks:
  - name: router
    type: classification
    model: all-minilm-l6-v2
    data:
      sources: [{path: t.csv}]
      columns: {text: body, label: queue}
"""


def test_gate_config_rejects_metrics_of_another_task():
    with pytest.raises(ProjectFileError) as err:
        parse_project(PROJECT + "    gate: {min: {rouge_l: 0.3}}\n")
    assert "gate.min" in str(err.value) and "rouge_l" in str(err.value)
    with pytest.raises(ProjectFileError):
        parse_project(PROJECT + "    gate: {min_acc: 0.3}\n")


def _evaluated_run(tmp_path: Path, gate: dict) -> Path:
    config = yaml.safe_load(PROJECT)
    task = config["tasks"][0] | {"gate": gate}
    run = tmp_path / "workspace" / "runs" / "router-20260101-000000"
    run.mkdir(parents=True)
    snapshot = {
        "task": task,
        "project": "p",
        "project_file": "",
        "dataset": {"path": "", "version": ""},
        "base_model_path": "",
        "precision": "fp32",
    }
    (run / "config.yaml").write_text(yaml.safe_dump(snapshot))
    (run / "eval.json").write_text(json.dumps({"base": BASE, "tuned": TUNED}))
    return run


def test_cli_gate_exit_codes_and_gate_json(tmp_path):
    runner = CliRunner()
    passing = _evaluated_run(tmp_path / "ok", {"min": {"accuracy": 0.7}})
    result = runner.invoke(app, ["gate", str(passing)])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output and json.loads((passing / "gate.json").read_text())["passed"] is True

    failing = _evaluated_run(tmp_path / "bad", {"min": {"accuracy": 0.9}, "max_class_f1_drop": 0.0})
    result = runner.invoke(app, ["gate", str(failing)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "gate failed" in result.output and "Traceback" not in result.output
    saved = json.loads((failing / "gate.json").read_text())
    assert saved["passed"] is False and any(r["rule"] == "min accuracy" and not r["passed"] for r in saved["rules"])


def test_cli_gate_needs_an_evaluated_run(tmp_path):
    run = _evaluated_run(tmp_path, {})
    (run / "eval.json").unlink()
    result = CliRunner().invoke(app, ["gate", str(run)])
    assert result.exit_code == 2 and "tuneloom eval" in result.output


def test_forgetting_budget():
    chat_base, chat_tuned = {"token_f1": 0.1}, {"token_f1": 0.3}
    forgetting = {"n": 48, "base": {"token_f1": 0.40}, "tuned": {"token_f1": 0.33}, "token_f1_drop": 0.07}
    result = {"base": chat_base, "tuned": chat_tuned, "forgetting": forgetting}
    assert not check_gate(GateConfig(max_forgetting=0.05), result).passed  # 0.40 - 0.33 = 0.07 > 0.05
    assert check_gate(GateConfig(max_forgetting=0.10), result).passed
    missing = check_gate(GateConfig(max_forgetting=0.10), {"base": chat_base, "tuned": chat_tuned})
    assert not missing.passed and "no forgetting check" in missing.rules[0].detail


def test_a_rule_on_an_unmeasured_metric_fails_readably():
    result = check_gate(GateConfig(min={"judge_score": 3.5}), {"base": {"rouge_l": 0.1}, "tuned": {"rouge_l": 0.2}})
    assert not result.passed and "not measured" in result.rules[0].detail
