"""Workspace layout, atomic writes, run lookup and the state a failed run leaves behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CLS_TASK
from tuneloom.artifacts import DatasetRef, RunSnapshot, read_snapshot
from tuneloom.atomic import atomic_dir, read_jsonl, write_json_atomic, write_jsonl_atomic, write_text_atomic
from tuneloom.config import load_project
from tuneloom.workspace import Workspace, append_jsonl, run_state, set_status


def test_write_text_atomic_replaces_content_without_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "first\n")
    assert target.read_text() == "first\n"
    write_text_atomic(target, "second – ünïcode\n")
    assert target.read_text(encoding="utf-8") == "second – ünïcode\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_write_text_atomic_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    write_text_atomic(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # temp file cleaned up


def test_json_helpers_round_trip(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1, "path": tmp_path, "text": "é"})
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert data == {"x": 1, "path": str(tmp_path), "text": "é"}
    rows = [{"i": 1}, {"i": 2, "s": "ü"}]
    write_jsonl_atomic(tmp_path / "r.jsonl", rows)
    assert read_jsonl(tmp_path / "r.jsonl") == rows
    append_jsonl(tmp_path / "r.jsonl", {"i": 3})
    assert read_jsonl(tmp_path / "r.jsonl")[-1] == {"i": 3}
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 3


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # not touched until the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_atomic_dir_keeps_old_folder_when_block_raises(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_dir(target) as tmp:
            (tmp / "partial.txt").write_text("partial")
            raise RuntimeError("half way")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left


def test_atomic_dir_creates_new_target(tmp_path):
    with atomic_dir(tmp_path / "deep" / "new") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "deep" / "new" / "f").read_text() == "x"


# ----------------------------------------------------------------------------------- run lookup


def _fake_run(root: Path, name: str, completed: bool = True, mtime: float | None = None) -> Path:
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: {}\n")
    if completed:
        (run / "summary.json").write_text("{}")
    if mtime is not None:
        os.utime(run, (mtime, mtime))
    return run


def _snapshot() -> RunSnapshot:
    return RunSnapshot(
        project="p",
        project_file="/p/tuneloom.yaml",
        task={"name": "qa", "type": "chat_sft"},
        dataset=DatasetRef(path="/p/ws/datasets/qa/v1", version="v1"),
        base_model_path="/m",
        precision="fp32",
    )


def test_new_run_layout(tmp_path):
    ws = Workspace(tmp_path)
    run = ws.new_run("qa", _snapshot())
    assert run.parent == tmp_path / "runs" and run.name.startswith("qa-")
    assert read_snapshot(run) == _snapshot()
    assert yaml.safe_load((run / "config.yaml").read_text())["schema_version"] == 1
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "running" and "updated" in status
    second = ws.new_run("qa", _snapshot())
    assert second != run  # same second: suffixed, never reused
    set_status(run, "failed", error="boom")
    assert json.loads((run / "status.json").read_text())["error"] == "boom"


def test_run_dir_resolution(tmp_path):
    ws = Workspace(tmp_path)
    now = time.time()
    a1 = _fake_run(tmp_path, "alpha-20260101-000000", mtime=now - 300)
    b1 = _fake_run(tmp_path, "beta-20260101-000100", mtime=now - 200)
    a2 = _fake_run(tmp_path, "alpha-20260101-000200", mtime=now - 100)
    unfinished = _fake_run(tmp_path, "beta-20260101-000300", completed=False, mtime=now)
    assert ws.run_dir("latest") == a2
    assert ws.run_dir("latest:alpha") == a2
    assert ws.run_dir("latest:beta") == b1  # the unfinished run has no summary.json
    assert ws.run_dir("alpha-20260101-000000") == a1
    assert ws.run_dir(unfinished.name) == unfinished  # by id, even unfinished
    assert ws.run_dir(str(b1)) == b1  # by path
    with pytest.raises(FileNotFoundError, match="no run 'alpha-1999'"):
        ws.run_dir("alpha-1999")
    with pytest.raises(FileNotFoundError, match="no completed run of gamma"):
        ws.run_dir("latest:gamma")


def test_run_dir_empty_workspace(tmp_path):
    with pytest.raises(FileNotFoundError, match="no completed run in"):
        Workspace(tmp_path).run_dir("latest")
    with pytest.raises(FileNotFoundError):
        Workspace(tmp_path).run_dir(str(tmp_path / "nowhere"))


def test_latest_task_does_not_match_a_task_whose_name_extends_it(tmp_path):
    ws = Workspace(tmp_path)
    now = time.time()
    mine = _fake_run(tmp_path, "support-20260101-000000", mtime=now - 100)
    _fake_run(tmp_path, "support-qa-20260101-000100", mtime=now)
    assert ws.run_dir("latest:support") == mine


def test_latest_is_the_newest_run_even_after_an_older_one_is_reevaluated(tmp_path):
    ws = Workspace(tmp_path)
    now = time.time()
    older = _fake_run(tmp_path, "qa-20260101-000000", mtime=now - 200)
    newer = _fake_run(tmp_path, "qa-20260101-000100", mtime=now - 100)
    assert ws.run_dir("latest:qa") == newer
    write_json_atomic(older / "eval.json", {"re": "evaluated"})  # what `tuneloom eval <older>` does
    assert ws.run_dir("latest:qa") == newer


def test_latest_dataset_pointer(tmp_path):
    ws = Workspace(tmp_path)
    ws.set_latest_dataset("t", "abc")
    assert (tmp_path / "datasets" / "t" / "LATEST").read_text() == "abc\n"


# ------------------------------------------------------------------------------- failed runs


def _runs(project) -> list[Path]:
    return sorted((project.workspace / "runs").iterdir())


def test_failed_training_run_records_the_error(project_dir):
    from tuneloom.data import prepare_dataset
    from tuneloom.train import train_task

    project = load_project(project_dir)
    ds = prepare_dataset(project, CLS_TASK)
    # a dataset whose manifest does not know one of the labels its rows use
    broken = project_dir / "broken-dataset"
    shutil.copytree(ds.path, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["result"]["labels"] = ["billing", "shipping"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KeyError):
        train_task(project, CLS_TASK, broken)
    (run,) = _runs(project)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["error"] == "KeyError: 'tech_support'"
    assert not (run / "summary.json").exists()
    assert not (run / "model").exists()
    snapshot = yaml.safe_load((run / "config.yaml").read_text())
    assert snapshot["task"]["name"] == CLS_TASK and snapshot["dataset"]["path"] == str(broken)
    # an unfinished run is not 'latest' and cannot be evaluated
    ws = Workspace(project.workspace)
    with pytest.raises(FileNotFoundError):
        ws.run_dir(f"latest:{CLS_TASK}")
    from tuneloom.evaluate import evaluate_run

    with pytest.raises(FileNotFoundError, match="has no summary.json"):
        evaluate_run(ws.run_dir(run.name))


def _fit_raising(monkeypatch, exc_or_fn):
    import tuneloom.train as train_mod

    def fake_fit(*args, **kwargs):
        if callable(exc_or_fn):
            return exc_or_fn()
        raise exc_or_fn

    monkeypatch.setattr(train_mod, "_fit", fake_fit)
    return train_mod.train_task


def test_crashing_fit_marks_run_failed(project_dir, monkeypatch):
    train_task = _fit_raising(monkeypatch, RuntimeError("out of memory"))
    project = load_project(project_dir)
    with pytest.raises(RuntimeError, match="out of memory"):
        train_task(project, CLS_TASK)
    (run,) = _runs(project)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["error"] == "RuntimeError: out of memory"
    assert status["pid"] == os.getpid()
    assert run_state(run) == "failed"
    assert not (run / "summary.json").exists()
    # train_task prepared the missing dataset before starting the run
    assert (Workspace(project.workspace).root / "datasets" / CLS_TASK / "LATEST").is_file()


def test_keyboard_interrupt_marks_run_interrupted(project_dir, monkeypatch):
    train_task = _fit_raising(monkeypatch, KeyboardInterrupt())
    project = load_project(project_dir)
    with pytest.raises(KeyboardInterrupt):
        train_task(project, CLS_TASK)
    (run,) = _runs(project)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["error"]
    assert run_state(run) == "interrupted"
    assert not (run / "summary.json").exists()


def test_sigterm_during_training_marks_run_interrupted(project_dir, monkeypatch):
    before = signal.getsignal(signal.SIGTERM)

    def send_sigterm():
        # never send a real SIGTERM unless train_task installed its handler (it would end pytest)
        handler = signal.getsignal(signal.SIGTERM)
        assert handler not in (signal.SIG_DFL, before), "train_task did not install a SIGTERM handler"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this returns
        raise AssertionError("SIGTERM did not stop training")

    train_task = _fit_raising(monkeypatch, send_sigterm)
    project = load_project(project_dir)
    with pytest.raises(KeyboardInterrupt):
        train_task(project, CLS_TASK)
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    (run,) = _runs(project)
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"


def test_run_state(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert run_state(run) == "interrupted"  # no status.json at all
    set_status(run, "running")
    assert run_state(run) == "running"  # this process is alive
    set_status(run, "completed")
    assert run_state(run) == "completed"
    set_status(run, "failed", error="x")
    assert run_state(run) == "failed"
    # 'running' but its process is gone: interrupted
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    set_status(run, "running")
    status = json.loads((run / "status.json").read_text())
    status["pid"] = child.pid
    (run / "status.json").write_text(json.dumps(status))
    assert run_state(run) == "interrupted"


def test_run_state_without_pid_is_not_running(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running", "updated": "2026-01-01T00:00:00"}))
    assert run_state(run) == "interrupted"
