"""MLflow run tracking and the training run report, on the tiny chat model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHAT_TASK, write_project
from tuneloom.config import load_project
from tuneloom.registry import ModelRegistry
from tuneloom.train import train_task

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("tracked")
    config = write_project(root, tiny_llama_dir, tiny_bert_dir, max_steps=4)
    project = load_project(config, ["train.eval_every=2"])
    return project, train_task(project, CHAT_TASK)


def test_params_metrics_and_artifacts_go_to_the_workspace_mlflow_store(trained):
    project, result = trained
    registry = ModelRegistry(project.workspace)
    assert registry.uri == f"sqlite:///{project.workspace / 'mlflow.db'}"
    client = registry.client
    [run] = client.search_runs([client.get_experiment_by_name("tuneloom/tiny-project").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == Path(result.run_dir).name
    assert run.data.params["task.train.lr"] == "0.001" and run.data.params["method"] == "lora"
    losses = client.get_metric_history(run.info.run_id, "loss")
    evals = client.get_metric_history(run.info.run_id, "eval_loss")
    rows = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m.step for m in losses] == [r["step"] for r in rows if "loss" in r]
    assert (
        sorted(m.step for m in evals) == [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    )  # the last step's validation is the final one (not repeated)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/config.yaml", "run/metrics.jsonl", "run/summary.json", "run/report.html"} <= artifacts
    assert "model/adapter_model.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(project.workspace / "mlruns")


def test_run_report_has_loss_and_learning_rate_plots(trained):
    _, result = trained
    html = (Path(result.run_dir) / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert f"training run <code>{Path(result.run_dir).name}</code>" in html and "validation loss" in html


def test_tracking_can_be_switched_off(tmp_path, tiny_llama_dir, tiny_bert_dir):
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    data = yaml.safe_load(config.read_text())
    data["tracking"] = {"mlflow": False}
    config.write_text(yaml.safe_dump(data))
    result = train_task(load_project(config), CHAT_TASK)
    assert (Path(result.run_dir) / "report.html").is_file()
    assert not (tmp_path / "workspace" / "mlflow.db").exists()


def test_tracking_server_url_is_used_without_network_by_default(tmp_path, monkeypatch, tiny_llama_dir, tiny_bert_dir):
    """A configured URL reaches MLflow as given; an unreachable server fails before training, readably."""
    from tuneloom.errors import TuneloomError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    project = load_project(config, [])
    project.config.tracking.uri = "http://127.0.0.1:9/"
    with pytest.raises(TuneloomError, match=r"model registry http://127\.0\.0\.1:9/"):
        train_task(project, CHAT_TASK)
    [run] = (tmp_path / "workspace" / "runs").iterdir()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
