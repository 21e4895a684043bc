"""A console workspace built once for the console tests: the tiny two-task project after one classification
loop (data, run, eval, gate), a second classification run and one chat training run (registered, in production), plus an admin, a reviewer and an API-only key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK, write_project


@dataclass
class ConsoleWorkspace:
    root: Path
    config: Path
    admin_key: str
    reviewer_key: str
    serve_key: str

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"


def _cli(*args: str) -> None:
    from tuneloom.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"


def _register_chat(config: Path) -> None:
    """The chat run becomes version 1 of its model, in production (the playground's third side)."""
    from tuneloom.config import load_project
    from tuneloom.registry.lookup import registry_for

    registry = registry_for(load_project(config))
    (run,) = sorted((config.parent / "workspace" / "runs").glob(f"{CHAT_TASK}-*"))
    version = registry.register_run(run, CHAT_TASK).version
    registry.promote(CHAT_TASK, version, force=True, reason="console tests: the chat run has no gate")


@pytest.fixture(scope="session")
def console_ws(tmp_path_factory, tiny_llama_dir, tiny_bert_dir) -> ConsoleWorkspace:
    from tuneloom.serve.auth import KeyStore, keys_path

    root = tmp_path_factory.mktemp("console-project")
    config = write_project(root, tiny_llama_dir, tiny_bert_dir, max_steps=2)
    text = config.read_text().replace(
        "      max_examples: 9\n      batch_size: 8\n",
        "      max_examples: 9\n      batch_size: 8\n      baselines: false\n    gate: {min: {accuracy: 0.0}}\n",
    )
    assert "baselines: false" in text
    config.write_text(text + "tracking: {mlflow: false}\nserve:\n  torch_threads: 1\n  limits: {max_tokens: 8}\n")
    _cli("run", "-c", str(config), "--task", CLS_TASK)  # data, run, eval and gate (it passes)
    _cli("train", "-c", str(config), "--task", CLS_TASK, "--set", "train.lr=1e-4")  # a second run: no eval, no gate
    _cli("train", "-c", str(config), "--task", CHAT_TASK)
    _register_chat(config)
    keys = KeyStore(keys_path(root / "workspace"))
    admin = keys.create(["*"], "lead", scopes=["admin"])[1]
    reviewer = keys.create(["*"], "support", scopes=["reviewer"])[1]
    serve_only = keys.create(["*"], "portal")[1]
    return ConsoleWorkspace(root, config, admin, reviewer, serve_only)
