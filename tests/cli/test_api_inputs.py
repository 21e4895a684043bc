"""What the CLI and `run_project` share through the Python API: the production lookup, `--test-data`
resolution, the choice of gate rules, and serve settings built as a copy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import CHAT_TASK, CLS_TASK
from tuneloom.artifacts import DatasetRef, RunSnapshot, write_snapshot
from tuneloom.cli.serve import with_serve_options
from tuneloom.config import GateConfig, Project, load_project
from tuneloom.errors import TuneloomError
from tuneloom.evaluate import inputs
from tuneloom.evaluate.gate import choose_gate_rules
from tuneloom.evaluate.inputs import find_production, resolve_test_data


def _run(root: Path, project: Project, task: str, gate: GateConfig | None = None, project_file: str | None = None) -> Path:
    """A run folder holding only the snapshot of `task` (with `gate` as its rules)."""
    settings = project.config.task(task).model_copy(update={"gate": gate or GateConfig()})
    run = root / "workspace" / "runs" / f"{task}-20260101-000000"
    run.mkdir(parents=True)
    write_snapshot(
        run,
        RunSnapshot(
            project=project.config.project,
            project_file=project_file if project_file is not None else str(project.path),
            task=settings.model_dump(mode="json"),
            dataset=DatasetRef(path="", version=""),
            base_model_path="",
            precision="fp32",
        ),
    )
    return run


@pytest.fixture
def project(data_project_dir) -> Project:
    return load_project(data_project_dir)


def test_resolve_test_data(tmp_path):
    assert resolve_test_data(None, None) is None
    dataset = tmp_path / "golden"
    dataset.mkdir()
    with pytest.raises(TuneloomError, match="not a prepared dataset folder"):
        resolve_test_data(dataset, None)
    (dataset / "manifest.json").write_text("{}")
    assert resolve_test_data(dataset, None) == str(dataset)
    with pytest.raises(TuneloomError, match="no production version in the registry"):
        resolve_test_data("production", None)
    production = SimpleNamespace(lineage={"dataset_path": str(dataset)})
    assert resolve_test_data("production", production) == str(dataset)  # type: ignore[arg-type]


def test_find_production_asks_the_registry_of_the_given_project(tmp_path, project, monkeypatch):
    asked = []
    monkeypatch.setattr(inputs, "production_for", lambda p, task: asked.append((p, task.name)) or "prod")
    run = _run(tmp_path, project, CLS_TASK)
    assert find_production(run, project) == "prod"
    assert asked == [(project, CLS_TASK)]


def test_find_production_defaults_to_the_runs_project_file(tmp_path, project, monkeypatch):
    asked = []
    monkeypatch.setattr(inputs, "production_for", lambda p, task: asked.append((p.path, task.name)) or "prod")
    assert find_production(_run(tmp_path / "a", project, CHAT_TASK), None) == "prod"
    assert asked == [(project.path, CHAT_TASK)]
    gone = _run(tmp_path / "b", project, CHAT_TASK, project_file=str(tmp_path / "moved.yaml"))
    assert find_production(gone, None) is None and len(asked) == 1


def test_find_production_none_without_the_task_or_a_registry(tmp_path, project, monkeypatch):
    run = _run(tmp_path, project, CLS_TASK)
    assert find_production(run, project) is None  # no registry in the workspace: MLflow is not even imported
    other = project.model_copy(update={"config": project.config.model_copy(update={"tasks": [project.config.task(CHAT_TASK)]})})
    monkeypatch.setattr(inputs, "production_for", lambda *a: pytest.fail("a project without the task was asked"))
    assert find_production(run, other) is None


def test_gate_rules_come_from_the_project_else_the_snapshot(tmp_path, project):
    trained_with = GateConfig(min={"accuracy": 0.5})
    run = _run(tmp_path, project, CLS_TASK, gate=trained_with)
    rules = choose_gate_rules(run, project)
    assert rules == (CLS_TASK, project.config.task(CLS_TASK).gate, str(project.path))
    assert choose_gate_rules(run, None) == (CLS_TASK, trained_with, "run snapshot")
    other = project.model_copy(update={"config": project.config.model_copy(update={"tasks": [project.config.task(CHAT_TASK)]})})
    assert choose_gate_rules(run, other).source == "run snapshot"


def test_serve_options_build_a_copy(project):
    served = with_serve_options(project, None, "transformers", no_auth=True)
    assert served.config.serve.backend == "transformers" and served.config.serve.auth is False
    assert project.config.serve.backend == "auto" and project.config.serve.auth is True  # unchanged
    assert with_serve_options(project, None, None, no_auth=False) is project
    with pytest.raises(TuneloomError, match="use auto, transformers, vllm or llamacpp"):
        with_serve_options(project, None, "tgi", no_auth=False)
    with pytest.raises(TuneloomError, match="only allowed on a loopback address"):
        with_serve_options(project, "0.0.0.0", None, no_auth=True)
