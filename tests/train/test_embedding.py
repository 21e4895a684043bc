"""Embedder fine-tuning: pairs from linked answers, passages and pseudo-queries, mined negatives, and a run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import chat_rows, write_jsonl
from tuneloom.artifacts import read_embedder_card, read_eval
from tuneloom.config import EmbeddingConfig, Project, ProjectFileError, load_project, parse_project
from tuneloom.errors import TuneloomError
from tuneloom.evaluate import evaluate_run
from tuneloom.evaluate.gate import check_gate
from tuneloom.knowledge import EmbedderMismatch, build_index, open_index
from tuneloom.knowledge.records import Chunk
from tuneloom.knowledge.reindex import reindex_with, with_embedder
from tuneloom.registry import register_run, resolve
from tuneloom.reports.html import write_report
from tuneloom.train import embedding, train_task
from tuneloom.train.embedding import KnowledgeBaseMissing
from tuneloom.train.embedding_pairs import Pair, document_pairs, link_rows, mine_negatives, pseudo_queries, trigram_jaccard

PRODUCTS = ["Cam Outdoor", "Doorbell Pro", "Smart Plug", "Thermostat", "Home Hub", "Motion Sensor"]


def product_chunks() -> list[Chunk]:
    """One chunk per product holding every answer about it (what chat_rows' answers are grounded in)."""
    answers: dict[str, list[str]] = {p: [] for p in PRODUCTS}
    for row in chat_rows():
        for p in PRODUCTS:
            if p.lower() in row["answer"].lower() and row["answer"].strip():
                answers[p].append(row["answer"])
    return [
        Chunk(
            chunk_id=f"products.md#{i}",
            doc_id="products.md",
            doc_hash="0" * 64,
            section=["Products", p],
            position=i,
            text=f"The {p}. " + " ".join(dict.fromkeys(answers[p])),
            tokens=50,
        )
        for i, p in enumerate(PRODUCTS)
    ]


PROJECT = """\
project: emb
workspace: workspace
knowledge:
  - name: products
    sources: [{{path: products.md}}]
    embedder: {{model: {kb_model}}}
    chunking: {{max_tokens: 400, overlap: 0}}
tasks:
  - name: finder
    type: embedding
    model: {model}
    knowledge: products
    data:
      sources: [{{path: qa.jsonl}}]
      columns: {{prompt: question, response: answer}}
      split: {{validation: 0.1, test: 0.2, seed: 7}}
    embedding: {{hard_negatives: 1, link_threshold: 0.3{extra}}}
    method: {{kind: {method}, r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
    train: {{max_steps: {steps}, lr: 1.0e-3, batch_size: 8, max_length: 64}}
    eval: {{batch_size: 16}}
    gate: {{min: {{ndcg_at_10: 0.0}}, max_drop: {{recall_at_5: 1.0}}}}
"""


def _yaml(model: Path | str = "./m", method: str = "lora", steps: int = 1, extra: str = "", kb_model: Path | str = "./m") -> str:
    return PROJECT.format(model=model, method=method, steps=steps, extra=extra, kb_model=kb_model)


def _project(
    tmp_path: Path, model: Path | str, kb_model: Path, method: str = "lora", steps: int = 4, extra: str = "", build: bool = True
) -> Project:
    """The embedding task's project with its knowledge base (products.md, one section per product), indexed."""
    write_jsonl(tmp_path / "qa.jsonl", chat_rows())
    sections = [f"## {c.section[-1]}\n\n{c.text}" for c in product_chunks()]
    (tmp_path / "products.md").write_text("# Products\n\n" + "\n\n".join(sections) + "\n")
    (tmp_path / "tuneloom.yaml").write_text(_yaml(model, method, steps, extra, kb_model))
    project = load_project(tmp_path)
    if build:
        build_index(project, "products", progress=False)
    return project


def test_answers_link_to_the_chunk_that_grounds_them(tiny_bert_dir):
    chunks = product_chunks()
    rows = [
        {"id": str(i), "query": r["question"], "answer": r["answer"]}
        for i, r in enumerate(chat_rows())
        if r["answer"].strip() and r["question"]
    ]
    rows.append({"id": "stray", "query": "Who won the match?", "answer": "Leeds United, three nil."})
    model = embedding.load_embedder(tiny_bert_dir)
    linking = link_rows(rows, chunks, model, threshold=0.6)  # a random tiny encoder: every cosine is near 1
    by_id = {p.row_id: p.chunk_id for p in linking.pairs}
    assert [row_id for row_id, _ in linking.unlinked] == ["stray"]
    assert len(linking.pairs) + len(linking.unlinked) == len(rows)
    for row in rows[:-1]:
        product = next(p for p in PRODUCTS if p.lower() in row["answer"].lower())
        assert by_id[row["id"]] == f"products.md#{PRODUCTS.index(product)}", row
    with pytest.raises(ValueError, match="no chunks"):
        link_rows(rows, [], model, 0.4)


def test_pseudo_queries_come_from_headings_and_first_sentences():
    returns = "# Returns\nReturns are accepted within thirty days of delivery. Refunds reach the original card in five days."
    chunks = [*product_chunks(), Chunk(chunk_id="r#0", doc_id="r.md", doc_hash="1" * 64, position=0, text=returns, tokens=20)]
    pairs = pseudo_queries(chunks)
    queries = {p.query: p for p in pairs}
    assert "Products: Thermostat" in queries and "The Thermostat." not in queries  # too short to stand as a query
    cloze = queries["Returns are accepted within thirty days of delivery."]
    assert cloze.positive == "Refunds reach the original card in five days." and cloze.chunk_id == "r#0"


def test_document_rows_train_on_their_own_documents_pseudo_queries():
    chunks = product_chunks()
    linking = document_pairs([{"id": "d1", "document": "products.md"}, {"id": "d2", "document": "gone.md"}], chunks)
    assert {p.row_id for p in linking.pairs} == {"d1"} and linking.unlinked == [("d2", 0.0)]
    assert {p.chunk_id for p in linking.pairs} == {c.chunk_id for c in chunks}
    nested = chunks[0].model_copy(update={"doc_id": "docs/products.md"})
    assert document_pairs([{"id": "d", "document": "products.md"}], [nested]).pairs  # a folder source's document


def test_no_pairs_at_all_is_an_error_naming_the_settings(tiny_bert_dir):
    model = embedding.load_embedder(tiny_bert_dir)
    rows = [{"id": "1", "query": "Who won?", "answer": "Leeds United, three nil."}]
    with pytest.raises(ValueError, match=r"no training pairs: 1 rows were unlinked.*embedding.pseudo_queries"):
        embedding.build_pairs(rows, product_chunks(), model, EmbeddingConfig(link_threshold=1.0))
    pairs, _ = embedding.build_pairs(rows, product_chunks(), model, EmbeddingConfig(link_threshold=1.0, pseudo_queries=True))
    assert pairs and all(p.origin == "pseudo" for p in pairs)
    with pytest.raises(ValueError, match="knowledge base has no chunks"):
        embedding.build_pairs(rows, [], model, EmbeddingConfig())


def test_mined_negatives_skip_near_duplicates_of_the_positive(tiny_bert_dir):
    chunks = product_chunks()
    texts = [c.text for c in chunks] + [chunks[0].text + " Thanks."]  # a near-duplicate of chunk 0
    model = embedding.load_embedder(tiny_bert_dir)
    pairs = [Pair("Is the Cam Outdoor waterproof?", chunks[0].text, chunks[0].chunk_id, "qa")]
    rows = mine_negatives(pairs, texts, model, per_pair=3, duplicate_threshold=0.8, seed=0)
    negatives = [rows[0][f"negative_{i}"] for i in (1, 2, 3)]
    assert len(set(negatives)) == 3 and all(trigram_jaccard(n, chunks[0].text) < 0.8 for n in negatives)
    with pytest.raises(ValueError, match="too few distinct chunks"):
        mine_negatives(pairs, texts[:1] * 3, model, per_pair=1, duplicate_threshold=0.8, seed=0)


def test_config_rules_name_the_setting():
    with pytest.raises(ProjectFileError, match="set `knowledge: <name>`"):
        parse_project(_yaml().replace("    knowledge: products\n", ""))
    with pytest.raises(ProjectFileError, match="exactly one of data.columns.response"):
        parse_project(_yaml().replace("response: answer", "response: a, passage: p"))
    with pytest.raises(ProjectFileError, match="unknown metric"):
        parse_project(_yaml().replace("ndcg_at_10: 0.0", "accuracy: 0.5"))
    with pytest.raises(ProjectFileError, match="matryoshka_dims"):
        parse_project(_yaml(extra=", matryoshka_dims: [0]"))
    docs = _yaml().replace("{prompt: question, response: answer}", "{text: text}")
    assert parse_project(docs).tasks[0].data.columns.text == "text"
    with pytest.raises(ProjectFileError, match="either documents"):
        parse_project(docs.replace("{text: text}", "{text: text, prompt: q}"))
    chat = "project: p\ntasks:\n  - {name: t, type: chat_sft, model: ./m, embedding: {}, data: {sources: [{path: a}], columns: {prompt: q, response: a}}}\n"
    with pytest.raises(ProjectFileError, match="embedding section applies to embedding tasks"):
        parse_project(chat)
    assert EmbeddingConfig(matryoshka_dims=[64, 128, 128]).matryoshka_dims == [128, 64]


def test_tiny_embedder_trains_evaluates_gates_and_reindexes(tmp_path, tiny_bert_dir):
    project = _project(tmp_path, tiny_bert_dir, tiny_bert_dir, extra=", matryoshka_dims: [32, 16]")
    result = train_task(project, "finder")
    model_dir = Path(result.model_dir)
    assert (model_dir / "modules.json").is_file() and any(model_dir.glob("*.safetensors"))
    assert not any(model_dir.glob("*.bin")) and not (model_dir / "adapter_config.json").exists()  # merged, safetensors
    base_window = embedding.load_embedder(tiny_bert_dir).max_seq_length
    assert embedding.load_embedder(model_dir).max_seq_length == base_window > 64  # not train.max_length
    card = read_embedder_card(model_dir)
    assert card.knowledge_base == "products" and card.chunks == 6 and card.pairs["qa"] > 0 and card.matryoshka_dims == [32, 16]
    evaluated = evaluate_run(result.run_dir)
    for metric in ("ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10"):
        for name in (metric, f"hybrid_{metric}"):  # dense alone, and fused with the store's keyword search
            assert 0.0 <= evaluated.tuned[name] <= 1.0 and name in evaluated.intervals and name in evaluated.comparison
    assert evaluated.tuned["recall_at_10"] == evaluated.tuned["hybrid_recall_at_10"] == 1.0  # six chunks: always in the top 10
    assert (
        evaluated.search_corpus
        and evaluated.search_corpus["linked"] + evaluated.search_corpus["unlinked"] == evaluated.n_examples
        and evaluated.search_corpus["hybrid"] == {"candidates": 50, "dense_weight": 1.0, "keyword_weight": 1.0, "rrf_k": 60}
    )
    assert read_eval(result.run_dir).comparison["ndcg_at_10"]["tuned"] == evaluated.tuned["ndcg_at_10"]
    gate = check_gate(project.config.task("finder").gate, json.loads((Path(result.run_dir) / "eval.json").read_text()))
    assert gate.passed and {r.rule for r in gate.rules} >= {"min ndcg_at_10", "max drop recall_at_5"}
    report = write_report([Path(result.run_dir)], tmp_path / "report", "emb", project.workspace)
    assert "ndcg_at_10" in report.read_text()

    register_run(result.run_dir, "finder", project.workspace)
    reindex_with(project, "products", "finder:1", progress=False)
    with pytest.raises(EmbedderMismatch, match="indexed with embedder 'finder:1'"):
        open_index(project, "products")  # the project file still names the base embedder
    folder = resolve("finder:1", workspace=project.workspace).path
    index = open_index(with_embedder(project, "products", str(folder)), "products")
    assert index.meta.embedder == "finder:1" and index.search("Is the Thermostat waterproof?", k=3)
    index.close()
    with pytest.raises(TuneloomError, match="tuned for knowledge base 'products', not 'manuals'"):
        reindex_with(_with_kb(project, "manuals"), "manuals", "finder:1", progress=False)


def _with_kb(project: Project, name: str) -> Project:
    """The project with a second knowledge base `name` (same settings as the first)."""
    extra = project.config.knowledge[0].model_copy(update={"name": name})
    config = project.config.model_copy(update={"knowledge": [*project.config.knowledge, extra]})
    return project.model_copy(update={"config": config})


def test_a_missing_knowledge_base_or_index_is_named_with_the_fix(tmp_path, tiny_bert_dir):
    project = _project(tmp_path, tiny_bert_dir, tiny_bert_dir, build=False)
    with pytest.raises(KnowledgeBaseMissing, match=r"'products' has no index yet: run `tuneloom index build products`"):
        embedding.load_corpus(str(project.path), "products")
    with pytest.raises(ProjectFileError, match="no knowledge base named 'nope'"):
        embedding.load_corpus(str(project.path), "nope")
    with pytest.raises(KnowledgeBaseMissing, match="prepared by an older Tuneloom"):
        embedding.load_corpus("", "products")
    with pytest.raises(ProjectFileError, match=r"tasks\[finder\].knowledge: no knowledge base named 'manuals'"):
        parse_project(_yaml().replace("knowledge: products", "knowledge: manuals"))


@pytest.mark.slow
def test_minilm_full_tuning_runs_a_few_steps(tmp_path, minilm_dir, tiny_bert_dir):
    project = _project(tmp_path, "all-minilm-l6-v2", tiny_bert_dir, method="full", steps=3)
    result = train_task(project, "finder")
    evaluated = evaluate_run(result.run_dir)
    assert evaluated.base["recall_at_1"] > 0.5  # MiniLM already finds the product chunk for most questions
    assert evaluated.tuned["recall_at_10"] == 1.0
