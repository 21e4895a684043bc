"""Resume after SIGKILL: a real `tuneloom train` process is killed after a checkpoint and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHAT_TASK, REPO, write_project
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.train import ResumeError, resume_run, train_task
from tuneloom.workspace import run_state

pytestmark = pytest.mark.timeout(600)

STEPS = 24


def _project(root: Path, llama: Path) -> Path:
    config = write_project(root, llama, llama, max_steps=STEPS)
    data = yaml.safe_load(config.read_text())
    data["tasks"] = [t for t in data["tasks"] if t["name"] == CHAT_TASK]
    # fp32 and a single thread: the killed-and-resumed run must repeat the uninterrupted one exactly
    data["tasks"][0]["train"].update(precision="fp32", eval_every=4, save_every=4, keep_checkpoints=3, batch_size=2)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from tuneloom.cli import main; main()", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def _final(run: Path) -> tuple[float, float]:
    """(training loss logged at the last step, final validation loss)."""
    rows = read_jsonl(run / "metrics.jsonl")
    last = [r["loss"] for r in rows if "loss" in r and r["step"] == STEPS]
    summary = json.loads((run / "summary.json").read_text())["train"]
    return last[-1], summary["eval_loss"]


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path, tiny_llama_dir):
    import torch

    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    killed_root.mkdir(), clean_root.mkdir()
    config = _project(killed_root, tiny_llama_dir)
    proc = subprocess.Popen(_cli("train", "-c", str(config)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs = killed_root / "workspace" / "runs"
    deadline = time.time() + 300
    while not list(runs.glob("*/checkpoints/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = next(runs.iterdir())
    assert run_state(run) == "interrupted"
    assert not (run / "summary.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
    assert killed_at < STEPS

    resumed = subprocess.run(_cli("train", "-c", str(config), "--resume", run.name), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_state(run) == "completed"
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    summary = json.loads((run / "summary.json").read_text())["train"]
    assert summary["steps"] == STEPS and summary["resumed_from"].startswith(str(run / "checkpoints"))
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert steps == sorted(set(steps)), "metrics.jsonl repeats steps after the resume"

    torch.set_num_threads(1)
    clean = train_task(load_project(_project(clean_root, tiny_llama_dir)))
    loss, eval_loss = _final(run)
    clean_loss, clean_eval = _final(Path(clean.run_dir))
    assert loss == pytest.approx(clean_loss, rel=1e-3)
    assert eval_loss == pytest.approx(clean_eval, rel=1e-3)

    again = subprocess.run(_cli("train", "-c", str(config), "--resume", run.name), env=_env(), capture_output=True, text=True)
    assert again.returncode == 2 and "is completed" in again.stderr


def test_resume_refuses_a_run_without_checkpoint(tmp_path, tiny_llama_dir):
    config = _project(tmp_path, tiny_llama_dir)
    run = tmp_path / "workspace" / "runs" / f"{CHAT_TASK}-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: {}\n")
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": 999999999}))
    with pytest.raises(ResumeError, match="has no checkpoint"):
        resume_run(run)
    result = subprocess.run(
        _cli("train", "-c", str(config), "--resume", "no-such-run"), env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 2 and "no run 'no-such-run'" in result.stderr
