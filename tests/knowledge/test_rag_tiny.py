"""RAG end to end on a tiny random Llama: passages recorded at data-prep time, RAFT training, four-way evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import CHAT_TASK
from tests.knowledge.rag_helpers import SIDES
from tests.knowledge.rag_helpers import rag_project as make_rag_project
from tuneloom.artifacts import read_eval, read_manifest
from tuneloom.atomic import read_jsonl
from tuneloom.cli.evaluate import retrieval_table
from tuneloom.config import load_project
from tuneloom.data.prepare import prepare_dataset
from tuneloom.evaluate import evaluate_run
from tuneloom.reports.html import write_report
from tuneloom.train import sft, train_task

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rag_project(tmp_path, tiny_llama_dir, tiny_bert_dir, monkeypatch):
    """The tiny project whose chat task names the `handbook` knowledge base (a keyword retriever over 6 chunks)."""
    return make_rag_project(tmp_path, tiny_llama_dir, tiny_bert_dir, monkeypatch)


def test_prepared_rows_record_their_passages_and_the_version_follows_the_knowledge_base(rag_project):
    config, overrides, state = rag_project
    first = prepare_dataset(load_project(config, overrides), CHAT_TASK)
    manifest = read_manifest(first.path)
    assert manifest.knowledge is not None and manifest.knowledge.knowledge == "handbook"
    assert manifest.knowledge.splits["train"].grounded == manifest.knowledge.splits["train"].rows > 0
    for split in ("train", "test"):
        for row in read_jsonl(f"{first.path}/{split}.jsonl"):
            assert len(row["knowledge"]["passages"]) == 2 and row["knowledge"]["grounding"].startswith("products.md#")
            assert row["messages"][-2]["content"].startswith(("Sources:",)) is False  # rows keep the bare question
    assert not [w for w in first.warnings if "retrieved passages" in w]
    assert prepare_dataset(load_project(config, overrides), CHAT_TASK).reused
    short = prepare_dataset(load_project(config, [*overrides, f"{CHAT_TASK}:train.max_length=64"]), CHAT_TASK)
    assert any("with their retrieved passages fill train.max_length 64" in w for w in short.warnings)
    state["version"] = "v2"  # the knowledge base changed: new passages, new dataset version
    assert prepare_dataset(load_project(config, overrides), CHAT_TASK).version != first.version
    plain = prepare_dataset(load_project(config), CHAT_TASK)
    assert read_manifest(plain.path).knowledge is None and "knowledge" not in read_jsonl(f"{plain.path}/test.jsonl")[0]


@pytest.mark.slow
def test_four_way_evaluation_on_the_same_questions(rag_project, tmp_path, monkeypatch):
    config, overrides, _ = rag_project
    seen = []
    prepare = sft.prepare
    monkeypatch.setattr(
        sft, "prepare", lambda task, path, p, m, train, val: seen.append(train) or prepare(task, path, p, m, train, val)
    )
    run = train_task(load_project(config, overrides), CHAT_TASK).run_dir
    assert all(r["messages"][-2]["content"].startswith("Sources:\n[1] products.md") for r in seen[0])  # RAFT prompts
    result = evaluate_run(run)
    rag = result.retrieval
    assert rag is not None and set(rag.sides) == SIDES and rag.n_examples == result.n_examples == 4
    assert rag.hit_rate is not None and 0.0 <= rag.hit_rate <= 1.0 and rag.n_grounded == 4
    assert set(rag.deltas) == {"tuned+retrieval vs tuned", "tuned+retrieval vs base+retrieval", "base+retrieval vs base"}
    for deltas in rag.deltas.values():
        for d in deltas.values():
            assert d.low <= d.high
    side = rag.sides["tuned+retrieval"]
    assert {"loss", "token_f1", "groundedness"} <= set(side) and 0.0 <= side["groundedness"] <= 1.0
    assert rag.sides["tuned"]["token_f1"] == pytest.approx(result.tuned["token_f1"])  # the bare sides are the usual ones
    example = rag.examples[0]
    assert set(example.answers) == SIDES and [s["n"] for s in example.sources] == [1, 2]
    assert read_eval(run).retrieval == rag
    console = Console(width=300, record=True)
    console.print(retrieval_table(CHAT_TASK, rag))
    text = console.export_text()
    assert "with and without retrieval (handbook, top 2; hit rate" in text and "tuned+retrieval vs tuned: token_f1 " in text
    html = write_report([Path(run)], tmp_path, "rag", tmp_path).read_text(encoding="utf-8")
    assert "With and without retrieval" in html and "<th>tuned+retrieval</th>" in html and "products.md &gt; Products" in html
