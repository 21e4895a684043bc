"""Fusion, reranking, table rows with tag columns, and many small files (tiny models)."""

from __future__ import annotations

import time

import pytest

from tests.knowledge.helpers import kb_project
from tuneloom.config import RetrievalConfig
from tuneloom.knowledge import Chunk, Filter, build_index, open_index, update_index
from tuneloom.knowledge.search import rrf


def _chunk(name: str) -> Chunk:
    return Chunk(chunk_id=name, doc_id=name, doc_hash="h", position=0, text=name, tokens=1)


def test_rrf_rewards_agreement_and_follows_the_weights():
    a, b, c = _chunk("a"), _chunk("b"), _chunk("c")
    dense, keyword = [(a, 0.9), (b, 0.8)], [(c, 9.0), (b, 3.0)]
    hits = rrf(dense, keyword, RetrievalConfig(rrf_k=60))
    assert [h.chunk.chunk_id for h in hits] == ["b", "a", "c"]  # b is in both lists
    assert hits[0].score == pytest.approx(1 / 62 + 1 / 62)
    assert (hits[0].dense_rank, hits[0].keyword_rank) == (2, 2)
    keyword_heavy = rrf(dense, keyword, RetrievalConfig(rrf_k=60, dense_weight=0.1, keyword_weight=1.0))
    assert [h.chunk.chunk_id for h in keyword_heavy] == ["b", "c", "a"]  # the keyword-only hit now beats a


def test_zero_weights_are_refused():
    with pytest.raises(ValueError, match="at least one a positive weight"):
        RetrievalConfig(dense_weight=0, keyword_weight=0)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, minilm_dir):
    """A 2-layer random BERT with one output: a cross-encoder as a local folder (safetensors)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def test_rows_with_tag_column_and_reranker(tmp_path, tiny_bert_dir, tiny_cross_encoder):
    project = kb_project(
        tmp_path,
        embedder=str(tiny_bert_dir),
        sources=[{"path": "faq.csv"}],
        title_column="topic",
        access={"tags_column": "teams"},
        retrieval={"reranker": str(tiny_cross_encoder), "top_k": 3},
    )
    (tmp_path / "faq.csv").write_text(
        "topic,text,teams\n"
        "returns,Returns are accepted within 30 days.,\n"
        'salaries,Salary reviews are in April.,"hr, managers"\n'
        "vpn,The VPN needs the Authenticator app.,it\n"
    )
    stats = build_index(project, "handbook", progress=False)
    assert stats.documents == 3 and stats.skipped == []
    index = open_index(project, "handbook")
    chunks = {c.doc_id: c for c in index.chunks()}
    assert chunks["faq.csv:row 2"].tags == ["hr", "managers"] and chunks["faq.csv:row 2"].metadata["title"] == "salaries"
    hits = index.search("salary reviews")
    assert len(hits) == 3 and all(h.rerank_score is not None for h in hits)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)
    visible = index.search("salary reviews", flt=Filter(allowed_tags=frozenset({"it"})))
    assert {h.chunk.doc_id for h in visible} == {"faq.csv:row 1", "faq.csv:row 3"}


def test_a_missing_text_column_is_listed(tmp_path, tiny_bert_dir):
    project = kb_project(tmp_path, embedder=str(tiny_bert_dir), sources=[{"path": "faq.csv"}])
    (tmp_path / "faq.csv").write_text("question,answer\nhi,there\n")
    stats = build_index(project, "handbook", progress=False)
    assert stats.documents == 0 and "no column 'text'" in stats.skipped[0].reason


@pytest.mark.slow  # ~25 s on two busy cores: writing and indexing 10,000 files
def test_ten_thousand_small_files(tmp_path, tiny_bert_dir):
    project = kb_project(tmp_path, embedder=str(tiny_bert_dir))
    docs = tmp_path / "docs"
    for folder in range(20):
        (docs / f"team{folder}").mkdir(parents=True)
        for i in range(500):
            (docs / f"team{folder}" / f"note{i}.txt").write_text(f"Note {i} of team {folder}: order code {folder * 1000 + i}.\n")
    started = time.perf_counter()
    stats = build_index(project, "handbook", progress=False)
    seconds = time.perf_counter() - started
    assert stats.documents == 10_000 and stats.chunks == 10_000
    (docs / "team3" / "note7.txt").write_text("Changed note.\n")
    again = update_index(project, "handbook", progress=False)
    assert (again.changed, again.embedded_chunks, again.unchanged) == (1, 1, 9_999)
    assert seconds < 60, f"10,000 files took {seconds:.0f} s"


def test_lance_store_uses_an_approximate_index_above_its_threshold(tmp_path):
    import numpy as np

    from tuneloom.knowledge.lance_store import LanceStore

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, 32)).astype(np.float32)
    vectors = centers[rng.integers(0, 40, size=3000)] + rng.normal(0, 0.1, size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [
        Chunk(
            chunk_id=f"d{i}#0", doc_id=f"d{i}", doc_hash="h", position=0, text=f"row {i}", tokens=2, tags=["odd"] if i % 2 else []
        )
        for i in range(3000)
    ]
    store = LanceStore(tmp_path / "lance", ann_threshold=1000)
    store.upsert(chunks, vectors)
    store.finish()
    assert {i.index_type for i in store._table.list_indices()} == {"FTS", "IvfPq"}
    found = 0
    for row in range(0, 3000, 150):
        exact = {f"d{i}#0" for i in np.argsort(-(vectors @ vectors[row]))[:10]}
        found += len(exact & {c.chunk_id for c, _ in store.dense_search(vectors[row], 10, Filter())})
    assert found / 200 >= 0.9
    public = store.dense_search(vectors[1], 10, Filter(allowed_tags=frozenset()))
    assert len(public) == 10 and all(c.tags == [] for c, _ in public)
    assert LanceStore(tmp_path / "lance", ann_threshold=1000)._approximate  # a reopened store knows its index
