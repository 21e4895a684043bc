"""A baseline that wins becomes a version: shipped as a run, gated, registered, promoted and served."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import CLS_TASK, write_project
from tuneloom.artifacts import read_snapshot
from tuneloom.config import GateConfig, load_project
from tuneloom.errors import TuneloomError
from tuneloom.evaluate import evaluate_run
from tuneloom.evaluate.gate import baselines_rule, gate_run
from tuneloom.evaluate.ship import ship_baseline

pytestmark = pytest.mark.timeout(600)


@pytest.mark.slow
def test_a_shipped_baseline_is_the_scored_baseline_and_is_registered_and_served(tmp_path, tiny_llama_dir, tiny_bert_dir):
    from fastapi.testclient import TestClient

    from tuneloom.cli import app as cli
    from tuneloom.registry import ModelRegistry
    from tuneloom.serve import create_app
    from tuneloom.train import train_task

    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    run = Path(train_task(load_project(config), CLS_TASK).run_dir)
    scored = evaluate_run(run).baselines["embedding_logreg"]
    shipped = ship_baseline(run)
    model_dir = shipped / "model"
    assert (model_dir / "head.safetensors").is_file() and (model_dir / "model.safetensors").is_file()
    assert not [p for p in model_dir.rglob("*") if p.suffix in (".pkl", ".bin", ".joblib")]
    assert read_snapshot(shipped).baseline == "embedding_logreg" and read_snapshot(shipped).task["method"]["kind"] == "full"

    ev = evaluate_run(shipped)  # the shipped model predicts what the evaluation's baseline predicted
    assert ev.tuned["accuracy"] == pytest.approx(scored["metrics"]["accuracy"])
    assert ev.tuned["macro_f1"] == pytest.approx(scored["metrics"]["macro_f1"])
    rule = baselines_rule("accuracy", 0.0, ev.model_dump())  # measured against the other baselines, not itself
    assert "best baseline tfidf_logreg" in rule.detail
    assert gate_run(shipped, GateConfig(), "test").passed  # no rules: passes, so promote needs no --force

    registry = ModelRegistry(tmp_path / "workspace")
    info = registry.register_run(shipped, CLS_TASK)
    version = info.version
    assert info.lineage["baseline"] == "embedding_logreg" and info.lineage["method"] == "full"
    registry.promote(CLS_TASK, version)
    created = CliRunner().invoke(cli, ["keys", "create", "-m", "*", "--name", "t", "-c", str(config)])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    texts = [e["text"] for e in ev.examples]
    with TestClient(create_app(load_project(config))) as client:
        reply = client.post("/v1/classify", json={"model": CLS_TASK, "input": texts}, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["system_fingerprint"] == f"{CLS_TASK}:{version}"
    assert [d["label"] for d in body["data"]] == [e["tuned"] for e in ev.examples]


def test_only_the_embedding_baseline_of_a_tuned_single_label_run_ships(tmp_path, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.evaluate import ship

    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir)
    snapshot = _snapshot(config, tiny_bert_dir)
    with pytest.raises(TuneloomError, match="pickled"):
        ship._check(snapshot, "tfidf_logreg")
    ship._check(snapshot, "embedding_logreg")
    with pytest.raises(TuneloomError, match="already is the baseline"):
        ship._check(snapshot.model_copy(update={"baseline": "embedding_logreg"}), "embedding_logreg")
    multi = {**snapshot.task, "data": {**snapshot.task["data"], "multi_label": True}}
    with pytest.raises(TuneloomError, match="single-label"):
        ship._check(snapshot.model_copy(update={"task": multi}), "embedding_logreg")


def _snapshot(config: Path, base: Path):
    from tuneloom.artifacts import DatasetRef, RunSnapshot

    task = load_project(config).config.task(CLS_TASK)
    return RunSnapshot(
        project="p",
        project_file=str(config),
        task=task.model_dump(mode="json"),
        dataset=DatasetRef(path=str(config.parent), version="v1"),
        base_model_path=str(base),
        precision="fp32",
    )
