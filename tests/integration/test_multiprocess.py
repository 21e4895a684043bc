"""Data-parallel training with `accelerate launch`: 2 CPU processes (gloo) on the tiny chat model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHAT_TASK, REPO, write_project
from tuneloom.train.distributed import LAUNCH_CONFIGS, launch_command, launch_config_path

pytestmark = pytest.mark.timeout(600)


def _tuneloom(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cli = "import sys; sys.argv = ['tuneloom', *sys.argv[1:]]; from tuneloom.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", cli, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


@pytest.mark.slow
def test_two_cpu_processes_train_one_run_with_a_doubled_global_batch(tmp_path, tiny_llama_dir, tiny_bert_dir):
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir)
    data = yaml.safe_load(config.read_text())
    data["tasks"][0]["train"] = {"epochs": 1, "lr": 1.0e-3, "batch_size": 4, "max_length": 128}
    data["tracking"] = {"mlflow": False}
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    done = _tuneloom("train", "-c", str(config), "--task", CHAT_TASK, "--processes", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = list((tmp_path / "workspace" / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 0 alone creates the run folder and writes the model
    run = runs[0]
    train = json.loads((run / "summary.json").read_text())["train"]
    assert train["processes"] == 2 and len(set(train["process_ids"])) == 2  # both ranks trained to the end
    assert train["global_batch_size"] == 8
    n_train = json.loads(
        (Path(yaml.safe_load((run / "config.yaml").read_text())["dataset"]["path"]) / "manifest.json").read_text()
    )["result"]["counts"]["train"]
    assert train["steps"] == -(-n_train // 8)  # one epoch of 8-example global batches: half the steps of 1 process
    assert (run / "model" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len({r["step"] for r in rows if "loss" in r}) == len([r for r in rows if "loss" in r])  # one writer
    assert f"{CHAT_TASK}: 2 processes, global batch 8, {train['steps']} steps" in " ".join(done.stdout.split())
    assert done.stdout.count("✓") == 1 and "Traceback" not in done.stderr


def test_launch_command_for_cpu_processes_and_shipped_configs():
    cmd = launch_command(["-c", "p.yaml", "--task", "qa"], 2, None)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd  # N processes via torchrun
    assert "--cpu" in launch_command([], 1, None)
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-6:] == ["-m", "tuneloom.train.launched", "-c", "p.yaml", "--task", "qa"]
    for name in LAUNCH_CONFIGS:
        path = launch_config_path(name)
        cfg = yaml.safe_load(path.read_text())
        assert cfg["distributed_type"] in ("FSDP", "DEEPSPEED") and cfg["num_processes"] >= 1
        assert launch_command([], None, name)[3:5] == ["--config_file", str(path)]
    assert yaml.safe_load(launch_config_path("deepspeed-zero3").read_text())["deepspeed_config"]["zero_stage"] == 3


def test_bad_launcher_options_are_refused(project_dir):
    from typer.testing import CliRunner

    from tuneloom.cli import app

    runner = CliRunner()
    config = str(project_dir / "tuneloom.yaml")
    result = runner.invoke(app, ["train", "-c", config, "--launcher", "torchrun"])
    assert result.exit_code == 2 and "the only launcher is 'accelerate'" in result.output
    result = runner.invoke(app, ["train", "-c", config, "--accelerate-config", "nowhere.yaml"])
    assert result.exit_code == 2 and re.search(
        r"nowhere\.yaml: no such file.*fsdp, deepspeed-zero2, deepspeed-zero3", result.output
    )
