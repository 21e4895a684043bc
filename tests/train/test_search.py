"""`tuneloom train --search N`: Optuna trials as normal runs, pruning, storage, report, CLI table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tuneloom.cli import app
from tuneloom.config import load_project, parse_project
from tuneloom.errors import ProjectFileError, TuneloomError

pytestmark = pytest.mark.timeout(600)
runner = CliRunner()

SPACE = {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "r": [2, 4]}


def _searchable(root: Path, llama: Path, bert: Path, search: dict) -> Path:
    config = write_project(root, llama, bert, max_steps=4)
    data = yaml.safe_load(config.read_text())
    data["tasks"][0]["search"] = search
    data["tasks"][0]["train"]["eval_every"] = 2
    data["tracking"] = {"mlflow": False}  # tracking has its own tests; keep these trials quick
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_search_cli_runs_trials_as_runs_and_prints_table_and_best(tmp_path, tiny_llama_dir, tiny_bert_dir):
    import optuna

    config = _searchable(tmp_path, tiny_llama_dir, tiny_bert_dir, {**SPACE, "pruning": False})  # pruning: own test
    result = runner.invoke(app, ["train", "-c", str(config), "--task", CHAT_TASK, "--search", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = result.stdout
    assert f"study: sqlite:///{tmp_path / 'workspace' / 'optuna.db'}" in out
    assert len(re.findall(r"│\s+[0-2]\s+│\s+COMPLETE\s+│", out)) == 3
    best_run = re.search(r"best run: (\S+) \(trial (\d+), validation loss (\d+\.\d+)\)", out)
    assert best_run

    study = optuna.load_study(study_name=CHAT_TASK, storage=f"sqlite:///{tmp_path / 'workspace' / 'optuna.db'}")
    assert len(study.trials) == 3 and study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_trial.number == int(best_run.group(2))
    assert study.best_value == pytest.approx(float(best_run.group(3)), abs=1e-4)
    runs = tmp_path / "workspace" / "runs"
    for trial in study.trials:  # every trial is a normal run folder with the sampled settings
        run = runs / trial.user_attrs["run"]
        snapshot = yaml.safe_load((run / "config.yaml").read_text())
        assert snapshot["task"]["train"]["lr"] == pytest.approx(trial.params["lr"])
        assert snapshot["task"]["method"]["r"] == trial.params["r"]
        assert snapshot["task"]["method"]["alpha"] == pytest.approx(2 * trial.params["r"])  # alpha/r ratio kept
        assert (run / "summary.json").is_file() and (run / "model" / "adapter_model.safetensors").is_file()
    best_summary = json.loads((runs / best_run.group(1) / "summary.json").read_text())["train"]
    assert best_summary["eval_loss"] == pytest.approx(study.best_value)

    report = Path(re.search(r"report: (\S+report\.html)", out).group(1))
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 3  # trial values, importance, parallel coordinates
    assert f"--set {CHAT_TASK}:train.lr=" in html
    search = json.loads((report.parent / "search.json").read_text())
    assert set(search["importances"]) == {"lr", "r"} and search["best"]["run"] == best_run.group(1)

    again = runner.invoke(app, ["train", "-c", str(config), "--task", CHAT_TASK, "--search", "1"])
    assert again.exit_code == 0, again.output
    trials = optuna.load_study(study_name=CHAT_TASK, storage=f"sqlite:///{tmp_path / 'workspace' / 'optuna.db'}").trials
    assert len(trials) == 4 and trials[3].params["lr"] not in [t.params["lr"] for t in trials[:3]]  # no repeat


def test_pruning_callback_stops_a_trial_behind_the_median():
    import optuna
    from transformers import TrainerControl, TrainerState

    from tuneloom.train.search import PruningCallback

    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    first = study.ask()
    first.report(1.0, step=2)
    study.tell(first, 1.0)
    state, control = TrainerState(global_step=2), TrainerControl()
    good = PruningCallback(study.ask())
    good.on_evaluate(None, state, control, metrics={"eval_loss": 0.5})
    assert good.pruned_at is None and not control.should_training_stop
    bad = PruningCallback(study.ask())
    bad.on_evaluate(None, state, control, metrics={"eval_loss": 3.0})
    assert bad.pruned_at == 2 and control.should_training_stop
    assert bad.trial.user_attrs["last_reported"] == 3.0


def test_postgres_url_reaches_optuna_rdb_storage(monkeypatch):
    import optuna

    from tuneloom.train.search import study_storage

    seen = {}
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda url, **kw: seen.setdefault("url", url))
    study_storage("postgresql+psycopg://tuner:pw@db.internal:5432/studies")
    assert seen["url"] == "postgresql+psycopg://tuner:pw@db.internal:5432/studies"
    seen.clear()
    study_storage("postgresql://tuner:pw@localhost/studies")  # bare scheme: the installed driver is named
    assert seen["url"].endswith("://tuner:pw@localhost/studies") and seen["url"].startswith("postgresql")


def test_unreachable_storage_fails_readably_without_the_password(tmp_path, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.train.search import search_task

    config = _searchable(
        tmp_path, tiny_llama_dir, tiny_bert_dir, {**SPACE, "storage": "postgresql+psycopg://tuner:hunter2@127.0.0.1:9/studies"}
    )
    with pytest.raises(TuneloomError, match=r"search storage postgresql\+psycopg://127\.0\.0\.1:9/studies") as err:
        search_task(load_project(config), CHAT_TASK, 1)
    assert "hunter2" not in str(err.value)


def _task_yaml(search: str, method: str = "lora") -> str:
    return f"""project: p
tasks:
  - name: qa
    type: chat_sft
    model: smollm2-135m-instruct
    data: {{sources: [{{path: qa.jsonl}}], columns: {{prompt: q, response: a}}}}
    method: {{kind: {method}}}
    search: {search}
"""


@pytest.mark.parametrize(
    ("search", "method", "message"),
    [
        ("{lr: {low: 0.01, high: 0.001}}", "lora", "tasks[0].search.lr (line 8): low (0.01) must be below high (0.001)"),
        ("{lr: {low: 0, high: 0.001, log: true}}", "lora", "a log range needs low > 0"),
        ("{r: [8, 16]}", "full", "search.r needs method.kind lora or qlora"),
        ("{pruning: true}", "lora", "search: give at least one setting to vary: lr, r, batch_size"),
        ("{lr: {low: 1e-5, high: 1e-3}, learning_rate: 3}", "lora", "unknown key"),
        ("{batch_size: [0, 8]}", "lora", "tasks[0].search.batch_size[0]"),
        ("{r: [8], storage: 'mongodb://x'}", "lora", "tasks[0].search.storage"),
    ],
)
def test_search_space_is_validated(search, method, message):
    with pytest.raises(ProjectFileError) as err:
        parse_project(_task_yaml(search, method), "tuneloom.yaml")
    assert message in str(err.value)


def test_search_without_a_search_section_or_with_processes_is_refused(project_dir):
    result = runner.invoke(app, ["train", "-c", str(project_dir / "tuneloom.yaml"), "--task", CHAT_TASK, "--search", "2"])
    assert result.exit_code == 2 and "has no search: section" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "-c", str(project_dir / "tuneloom.yaml"), "--search", "2", "--processes", "2"])
    assert result.exit_code == 2 and "cannot be combined with --processes" in result.output
