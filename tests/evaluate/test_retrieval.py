"""Ranking metrics against hand-computed values, and retrieval evaluation's failure paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneloom.config import RetrievalConfig
from tuneloom.evaluate.retrieval import METRICS, grouped_queries, hybrid_ranked, rank, ranking_scores
from tuneloom.knowledge.records import Chunk
from tuneloom.train.embedding import Corpus
from tuneloom.train.embedding_pairs import Linking, Pair


def test_a_hit_at_rank_three_scores_as_computed_by_hand():
    ranked = [["a", "b", "rel", "c", "d", "e", "f", "g", "h", "i", "j"]]
    scores = ranking_scores(ranked, [{"rel"}])
    assert scores["recall_at_1"][0] == 0.0
    assert scores["recall_at_5"][0] == 1.0 and scores["recall_at_10"][0] == 1.0
    assert scores["mrr_at_10"][0] == pytest.approx(1 / 3)
    assert scores["ndcg_at_10"][0] == pytest.approx(1 / math.log2(4))  # DCG 1/log2(3+1), ideal DCG 1


def test_two_relevant_chunks_and_a_miss():
    ranked = [["x", "r1", "y", "z", "w", "v", "r2", "q", "p", "o"], ["x"] * 10]
    scores = ranking_scores(ranked, [{"r1", "r2"}, {"gone"}])
    assert scores["recall_at_5"].tolist() == [0.5, 0.0] and scores["recall_at_10"].tolist() == [1.0, 0.0]
    assert scores["mrr_at_10"].tolist() == [0.5, 0.0]
    dcg = 1 / math.log2(3) + 1 / math.log2(8)  # ranks 2 and 7
    ideal = 1 + 1 / math.log2(3)  # ranks 1 and 2
    assert scores["ndcg_at_10"][0] == pytest.approx(dcg / ideal) and scores["ndcg_at_10"][1] == 0.0


def test_a_relevant_chunk_past_rank_ten_does_not_count():
    ranked = [[f"n{i}" for i in range(10)] + ["rel"]]
    scores = ranking_scores(ranked, [{"rel"}])
    assert all(scores[m][0] == 0.0 for m in METRICS)


class _Lookup:
    """An embedder stand-in: a fixed vector per text (exact search is what is under test)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts, **kwargs):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)

    def get_embedding_dimension(self) -> int:
        return 2


def test_rank_orders_chunks_by_cosine():
    chunks = [Chunk(chunk_id=c, doc_id="d", doc_hash="h", position=i, text=c, tokens=1) for i, c in enumerate("abc")]
    model = _Lookup({"a": [1, 0], "b": [0.6, 0.8], "c": [0, 1], "q": [0.8, 0.6]})
    ranked, ms = rank(model, ["q"], Corpus("kb", chunks, None), batch_size=4)
    assert ranked == [["b", "a", "c"]] and ms >= 0.0  # q.b = 0.96, q.a = 0.8, q.c = 0.6


def test_queries_sharing_a_heading_count_once_with_each_of_its_chunks_relevant():
    linking = Linking(
        pairs=[
            Pair("Returns", "first half", "c1", "pseudo", "d1"),
            Pair("Returns", "second half", "c2", "pseudo", "d1"),
            Pair("Refunds", "text", "c3", "pseudo", "d1"),
        ]
    )
    assert grouped_queries(linking) == [("d1", "Returns", {"c1", "c2"}), ("d1", "Refunds", {"c3"})]


def test_hybrid_ranking_fuses_each_querys_dense_and_keyword_candidates_as_search_does():
    a, b, c, d = (Chunk(chunk_id=x, doc_id="d", doc_hash="h", position=i, text=x, tokens=1) for i, x in enumerate("abcd"))
    dense = [[(a, 0.9), (b, 0.8), (c, 0.7), (d, 0.1)]]
    keyword = [[(c, 5.0), (d, 1.0)]]
    # a 1/61, b 1/62, c 1/63 + 1/61, d 1/64 + 1/62: the keyword hits rise above the dense-only ones
    assert hybrid_ranked(dense, keyword, RetrievalConfig()) == [["c", "d", "a", "b"]]
    assert hybrid_ranked(dense, [[]], RetrievalConfig()) == [["a", "b", "c", "d"]]  # no keyword candidates: dense order
    only_keyword = RetrievalConfig(dense_weight=0.0, keyword_weight=1.0)
    assert hybrid_ranked(dense, keyword, only_keyword) == [["c", "d"]]  # a zero weight leaves that search out
    many = [[(Chunk(chunk_id=f"n{i}", doc_id="d", doc_hash="h", position=i, text="n", tokens=1), 1.0) for i in range(30)]]
    assert len(hybrid_ranked(many, [[]], RetrievalConfig())[0]) == 10  # cut at the metrics' depth
