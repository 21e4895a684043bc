"""`tuneloom ask` and RAG data preparation against a real knowledge base (LanceDB, the packaged MiniLM)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tests.knowledge.rag_helpers import product_chunks
from tuneloom.artifacts import read_manifest
from tuneloom.cli import app
from tuneloom.config import load_project
from tuneloom.knowledge import build_index
from tuneloom.knowledge.ask import ask
from tuneloom.train import train_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama_dir, tiny_bert_dir, minilm_dir):
    """The tiny project with a `handbook` knowledge base (one Markdown file), indexed and a RAG run trained."""
    root = tmp_path_factory.mktemp("rag-ask")
    config = write_project(root, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    handbook = "# Products\n\n" + "\n\n".join(f"## {c.section[-1]}\n\n{c.text}" for c in product_chunks())
    (root / "data" / "handbook.md").write_text(handbook, encoding="utf-8")
    text = config.read_text().replace(
        "    model: " + str(tiny_llama_dir), f"    model: {tiny_llama_dir}\n    knowledge: handbook", 1
    )
    text = text.replace(
        "      max_length: 128\n    eval:\n      max_new_tokens: 8",
        "      max_length: 384\n    eval:\n      max_new_tokens: 8",
        1,
    )
    config.write_text(
        text
        + f"knowledge:\n  - name: handbook\n    sources: [{{path: data/handbook.md}}]\n    embedder: {{model: {minilm_dir}}}\n"
    )
    overrides = ["eval.forgetting_check=false", "eval.baselines=false", "rag.top_k=2", "rag.passage_chars=300"]
    project = load_project(config, [f"{CHAT_TASK}:{o}" for o in overrides])
    build_index(project, "handbook", progress=False)
    result = train_task(project, CHAT_TASK)
    return project, config, result


def test_prepared_rows_hold_passages_from_the_index(trained):
    _, _, result = trained
    account = read_manifest(result.dataset).knowledge
    assert account is not None and account.knowledge == "handbook"
    assert account.splits["train"].grounded > 0.8 * account.splits["train"].rows  # each answer's product section grounds it


def test_ask_answers_with_numbered_sources(trained):
    project, config, _ = trained
    answer = ask(project, "Is the Thermostat waterproof?")
    assert answer.knowledge == "handbook" and len(answer.sources) == 2 and answer.model.startswith(CHAT_TASK)
    assert "Thermostat" in answer.sources[0].chunk.text
    sets = ["--set", f"{CHAT_TASK}:rag.top_k=2", "--set", f"{CHAT_TASK}:rag.passage_chars=300"]
    out = runner.invoke(app, ["ask", "Is the Thermostat waterproof?", "-c", str(config), "--model", "latest:" + CHAT_TASK, *sets])
    assert out.exit_code == 0, out.output
    assert re.search(
        r"Sources \(handbook\):\n  \[1\] data/handbook\.md > Products > Thermostat  data/handbook\.md#\d+ · score", out.stdout
    )
    assert "\n  [2] data/handbook.md > Products > " in out.stdout and "[3]" not in out.stdout


def test_ask_refuses_what_it_cannot_answer_with(trained):
    _, config, _ = trained
    for args, message in (
        (["   "], "the question is empty"),
        (["Hello?", "--knowledge", "nope"], "no knowledge base named 'nope'"),
        (["Hello?", "--model", "no-such-model"], "no-such-model"),
    ):
        out = runner.invoke(app, ["ask", *args, "-c", str(config)])
        assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output
