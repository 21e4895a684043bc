"""`tuneloom iterate` on a tiny chat model: exit codes (promoted, gate failed, nothing new), the dataset
version with weighted feedback rows and lineage, a second turn from production's adapter, the lock,
a feedback database failing after registration, and kill -9 (subprocess) at the two worst moments.

The review queue is a stand-in (`FileFeedback`, the `FeedbackSource` protocol): its rows have the
shape the feedback API hands over; test_iterate_feedback.py runs the real queue end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tuneloom.artifacts import read_iterate_state, read_manifest
from tuneloom.cli import app
from tuneloom.config import load_project
from tuneloom.data import load_split
from tuneloom.iterate import FeedbackUnavailable, IterateBusy, iterate_task
from tuneloom.iterate.lock import task_lock
from tuneloom.iterate.run import compact_ids
from tuneloom.registry.lookup import registry_for

SYSTEM = "You are the Acme Home support assistant. Answer briefly."
ITERATE = [
    f"{CHAT_TASK}:iterate.{k}"
    for k in ("min_new_rows=4", "feedback_weight=2", "golden_metrics=[token_f1]", "golden_max_drop=1.0")
]
FAST = [f"{CHAT_TASK}:eval.forgetting_check=false", f"{CHAT_TASK}:eval.baselines=false", *ITERATE]


def feedback_rows(start: int, n: int) -> list[dict[str, Any]]:
    """Rows as the feedback API gives them: the task's training format plus `lineage`."""
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"How do I reset hub number {i}?"},
                {"role": "assistant", "content": f"Hold the button of hub {i} for ten seconds."},
            ],
            "lineage": {"feedback_id": i, "completion_id": f"chatcmpl-{i}", "model_version": "helpdesk-qa:1"},
        }
        for i in range(start, start + n)
    ]


class FileFeedback:
    """A review queue in a JSON file: accepted rows until they are marked used (marks appended to a log)."""

    def __init__(self, folder: Path, fail_marking: bool = False) -> None:
        self.folder, self.fail_marking = folder, fail_marking

    def contribution(self) -> SimpleNamespace:
        rows = json.loads((self.folder / "queue.json").read_text())
        used = set(self.marked())
        train = [r for r in rows if r["lineage"]["feedback_id"] not in used]
        held, train = train[:2], train[2:]
        ids = [r["lineage"]["feedback_id"] for r in train]
        return SimpleNamespace(
            version=f"fb{'-'.join(map(str, ids))}"[:40],
            path=str(self.folder),
            rows=train,
            feedback_ids=ids,
            held_out=held,
            held_out_ids=[r["lineage"]["feedback_id"] for r in held],
            excluded={"leaked": [999]},
        )

    def mark_used(self, feedback_ids: list[int], model_version: str) -> None:
        if self.fail_marking:
            raise FeedbackUnavailable("feedback database unavailable while marking: database is locked")
        with open(self.folder / "marks.jsonl", "a") as fh:
            fh.write(json.dumps({"ids": feedback_ids, "version": model_version}) + "\n")

    def marked(self) -> list[int]:
        path = self.folder / "marks.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        return [i for line in lines for i in json.loads(line)["ids"]]


@pytest.fixture
def loop_project(tmp_path: Path, tiny_llama_dir: Path, tiny_bert_dir: Path) -> Path:
    project_file = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=2)
    project_file.write_text(project_file.read_text() + "tracking: {mlflow: false}\n")
    (tmp_path / "queue.json").write_text(json.dumps(feedback_rows(1, 8)))
    return project_file


def test_compact_ids() -> None:
    assert compact_ids([5, 1, 2, 3, 9, 10, 3]) == "1-3,5,9-10"
    assert compact_ids(list(range(0, 4000, 2)), limit=30).endswith("(2000 ids)")


def test_turns_exit_codes_and_lineage(loop_project: Path) -> None:
    project = load_project(loop_project, FAST)
    source = FileFeedback(loop_project.parent)
    first = iterate_task(project, CHAT_TASK, source=source)
    assert (first.outcome, first.exit_code, first.version, first.production_after) == ("promoted", 0, 1, 1)
    assert first.training_rows["feedback"] == 12 and first.start_from == "base"  # 6 rows, weight 2
    assert [c.reference for c in first.golden] == ["base"] * len(first.golden) and first.feedback_slice
    assert sorted(source.marked()) == list(range(1, 9))  # trained-on and held-out rows are both used
    dataset = Path(first.dataset or "")
    train = load_split(dataset, "train")
    assert all("lineage" not in r for r in train) and len(train) == read_manifest(dataset).result.counts["train"]
    assert load_split(dataset, "test") == load_split(first.parent_dataset or "", "test")  # the golden set is kept
    assert len(load_split(dataset / "feedback-holdout", "test")) == 2
    assert read_manifest(dataset).result.sources[-1].rejected == {"leaked": 1}
    version = registry_for(project).list_versions(CHAT_TASK)[0]
    assert version.tags["feedback_ids"] == "3-8" and version.tags["feedback_held_out_ids"] == "1-2"

    assert iterate_task(project, CHAT_TASK, source=source).exit_code == 3  # everything used: nothing new
    (loop_project.parent / "queue.json").write_text(json.dumps(feedback_rows(1, 14)))
    project = load_project(loop_project, [*FAST, f"{CHAT_TASK}:iterate.min_feedback_gain=10"])  # unreachable: the gate fails
    failed = iterate_task(project, CHAT_TASK, source=source)
    assert (failed.outcome, failed.exit_code, failed.production_after, failed.start_from) == ("gate_failed", 1, 1, "production")
    assert [c.reference for c in failed.golden][0] == "production"
    assert any("held-out feedback" in f for f in failed.gate_failures)
    assert sorted(source.marked()) == list(range(1, 9))  # a refused version uses up no feedback
    assert read_iterate_state(project.workspace, CHAT_TASK).stage == "done"  # type: ignore[union-attr]


def test_lock_refuses_a_second_run_and_cli_exit_code(loop_project: Path) -> None:
    project = load_project(loop_project, FAST)
    with task_lock(project.workspace, CHAT_TASK):
        with pytest.raises(IterateBusy, match="another `tuneloom iterate` is running"):
            iterate_task(project, CHAT_TASK, source=FileFeedback(loop_project.parent), wait_s=0.3)
        result = CliRunner().invoke(
            app, ["iterate", "-c", str(loop_project), "--task", CHAT_TASK, *[a for f in FAST for a in ("--set", f)]]
        )
        assert result.exit_code == 4 and "another" in result.output
    (loop_project.parent / "queue.json").write_text(json.dumps(feedback_rows(1, 3)))
    summary = iterate_task(project, CHAT_TASK, source=FileFeedback(loop_project.parent))
    assert summary.exit_code == 3 and "min_new_rows is 4" in summary.reason


KILLER = """
import json, os, signal, sys
from pathlib import Path
sys.path[:0] = [{src!r}, {root!r}]
from tests.iterate.test_iterate import FileFeedback
from tuneloom.config import load_project
from tuneloom.iterate import run

project_file = Path(sys.argv[1])
where = sys.argv[2]
if where == "after_register":
    real = run.ModelRegistry.register_run
    def register_then_die(self, *a, **k):
        real(self, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    run.ModelRegistry.register_run = register_then_die
else:
    from transformers import TrainerCallback
    class Die(TrainerCallback):
        def on_step_end(self, *a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
    real_train = run.train_task
    run.train_task = lambda *a, **k: real_train(*a, callbacks=[Die()], **k)
run.iterate_task(load_project(project_file, {fast!r}), {task!r}, source=FileFeedback(project_file.parent))
"""


def _killed(project_file: Path, where: str) -> None:
    """Run iterate in a subprocess that SIGKILLs itself `where` (mid-training, or right after registering)."""
    repo = Path(__file__).resolve().parents[2]
    script = KILLER.format(src=str(repo / "src"), root=str(repo), task=CHAT_TASK, fast=FAST)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(project_file), where], env=env, timeout=300)
    assert done.returncode == -9


@pytest.mark.slow
def test_kill_9_and_a_failing_database_resume_without_promoting_half_way(loop_project: Path) -> None:
    project = load_project(loop_project, FAST)
    registry = registry_for(project)
    source = FileFeedback(loop_project.parent)
    _killed(loop_project, "training")
    state = read_iterate_state(project.workspace, CHAT_TASK)
    assert state is not None and state.stage == "dataset" and not registry.has_model(CHAT_TASK)
    _killed(loop_project, "after_register")  # resumes, trains again, is killed once the version exists
    state = read_iterate_state(project.workspace, CHAT_TASK)
    assert state is not None and state.stage == "gated" and registry.production(CHAT_TASK) is None
    with pytest.raises(FeedbackUnavailable, match="database is locked"):
        iterate_task(project, CHAT_TASK, source=FileFeedback(loop_project.parent, fail_marking=True))
    state = read_iterate_state(project.workspace, CHAT_TASK)
    assert state is not None and state.stage == "registered" and state.version == 1
    assert source.marked() == [] and registry.production(CHAT_TASK) is None  # nothing marked or promoted yet
    summary = iterate_task(project, CHAT_TASK, source=source)
    assert summary.resumed and summary.outcome == "promoted" and summary.production_after == 1
    assert [v.version for v in registry.list_versions(CHAT_TASK)] == [1]  # the killed registration was found again
    assert sorted(source.marked()) == list(range(1, 9))  # marked once
