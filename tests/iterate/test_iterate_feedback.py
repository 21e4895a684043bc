"""iterate on the real review queue: served answers with corrections -> auto-accepted rows -> a promoted
version that used them (accounting holds, nothing used twice), then a locked and an unreachable
feedback database (exit code 4, nothing changed). SQLite, and PostgreSQL when TUNELOOM_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tests.feedback.conftest import chat_answer, open_store, rate, store_url  # noqa: F401  # store_url: the fixture
from tests.iterate.test_iterate import FAST
from tuneloom.cli import app
from tuneloom.config import Project, load_project
from tuneloom.feedback import accounting
from tuneloom.iterate import FeedbackUnavailable, iterate_task
from tuneloom.registry.lookup import registry_for

QUESTIONS = [
    (f"Can the hub number {i} join a 5 GHz network?", f"No, hub {i} needs 2.4 GHz Wi-Fi or Ethernet.") for i in range(10)
]


def loop_project(root: Path, tiny_llama_dir: Path, tiny_bert_dir: Path, url: str | None) -> Path:
    path = write_project(root, tiny_llama_dir, tiny_bert_dir, max_steps=2)
    config = yaml.safe_load(path.read_text())
    config["tracking"] = {"mlflow": False}
    config["tasks"][0]["feedback"] = {"auto_accept": [{"name": "leads", "tags": ["reviewed"]}], "held_out": 0.2}
    if url:
        config["serve"] = {"feedback_db": url}
    path.write_text(yaml.safe_dump(config))
    return path


def answered_and_corrected(project: Project) -> None:
    store = open_store(project)
    for question, right in QUESTIONS:
        rate(store, chat_answer(store, question, "Yes."), "down", correction=right, tags=["reviewed"])
    store.close()


@pytest.mark.slow
def test_reviewed_feedback_becomes_a_promoted_version(
    tmp_path: Path,
    tiny_llama_dir: Path,
    tiny_bert_dir: Path,
    store_url: str | None,  # noqa: F811
) -> None:
    project_file = loop_project(tmp_path, tiny_llama_dir, tiny_bert_dir, store_url)
    project = load_project(project_file, FAST)
    answered_and_corrected(project)
    summary = iterate_task(project, CHAT_TASK)
    assert (summary.outcome, summary.exit_code, summary.production_after) == ("promoted", 0, 1)
    assert len(summary.feedback_ids) == 8 and len(summary.held_out_ids) == 2
    counts = accounting(project, CHAT_TASK)
    assert counts.holds and counts.used == 10 and counts.available == 0
    version = registry_for(project).list_versions(CHAT_TASK)[0]
    assert version.tags["feedback_contribution"] and version.tags["feedback_ids"]
    again = iterate_task(project, CHAT_TASK)
    assert again.exit_code == 3 and again.new_rows == 0  # nothing used twice


def test_locked_or_unreachable_database_exit_4(tmp_path: Path, tiny_llama_dir: Path, tiny_bert_dir: Path) -> None:
    project_file = loop_project(tmp_path, tiny_llama_dir, tiny_bert_dir, None)
    project = load_project(project_file, FAST)
    answered_and_corrected(project)
    locker = sqlite3.connect(project.workspace / "serve" / "feedback.db", timeout=1)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        with pytest.raises(FeedbackUnavailable, match="feedback database unavailable .*nothing was changed"):
            iterate_task(project, CHAT_TASK)
    finally:
        locker.rollback()
        locker.close()
    assert not (project.workspace / "iterate" / CHAT_TASK / "state.json").exists()
    config = yaml.safe_load(project_file.read_text())
    config["serve"] = {"feedback_db": f"sqlite:///{tmp_path}/no/such/folder/feedback.db"}
    project_file.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["iterate", "-c", str(project_file), "--task", CHAT_TASK])
    assert result.exit_code == 4 and "feedback database" in result.output
    assert registry_for(load_project(project_file)).has_model(CHAT_TASK) is False
