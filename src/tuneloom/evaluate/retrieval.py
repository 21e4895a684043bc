"""Retrieval evaluation of an embedder: recall@1/5/10, MRR@10 and nDCG@10 of the base and the tuned embedder over
the whole knowledge base, on the held-out questions, with paired-bootstrap intervals of the differences.

Each embedder is scored twice: dense (exact cosine search, the embedder alone) and hybrid (its dense ranking fused
with the knowledge base's keyword ranking by the knowledge base's own reciprocal rank fusion settings, as
`tuneloom ask` and serving search; without the optional reranker). Hybrid metrics are named `hybrid_<metric>`.

Each test question's relevant chunk is the one its answer (or passage) links to (`link_rows`, the same rule as in
training, with the base embedder); questions no chunk grounds are listed and left out of the averages.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneloom.artifacts import read_manifest
from tuneloom.config import RetrievalConfig
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap
from tuneloom.knowledge.records import Chunk, Filter
from tuneloom.knowledge.search import rrf
from tuneloom.train import embedding as embedder
from tuneloom.train.embedding import Corpus, load_embedder, row_pairs, settings
from tuneloom.train.embedding_pairs import Linking, encode

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext

K = 10
METRICS = ("ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10")
HYBRID = "hybrid_"
Keyword = list[list[tuple[Chunk, float]]]  # each query's keyword candidates, best first


def ranking_scores(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, np.ndarray]:
    """Per-query recall@1/5/10, MRR@10 and nDCG@10 (binary relevance) of ranked chunk ids."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    discounts = 1 / np.log2(np.arange(2, K + 2))
    for ids, rel in zip(ranked, relevant):
        hits = np.array([cid in rel for cid in ids[:K]], dtype=float)
        for k in (1, 5, 10):
            out[f"recall_at_{k}"].append(hits[:k].sum() / len(rel))
        first = np.flatnonzero(hits)
        out["mrr_at_10"].append(1 / (first[0] + 1) if first.size else 0.0)
        ideal = discounts[: min(len(rel), K)].sum()
        out["ndcg_at_10"].append(float((hits * discounts[: len(hits)]).sum() / ideal))
    return {m: np.asarray(v) for m, v in out.items()}


def dense_candidates(
    model: Any, queries: Sequence[str], corpus: Corpus, batch_size: int, depth: int = K
) -> tuple[list[list[tuple[Chunk, float]]], float]:
    """The top `depth` chunks of each query by cosine similarity (exact search), with scores, and ms per query."""
    vectors = encode(model, [c.text for c in corpus.chunks], batch_size)
    started = time.perf_counter()
    sims = encode(model, queries, batch_size) @ vectors.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
    ms = 1000 * (time.perf_counter() - started) / max(len(queries), 1)
    return [[(corpus.chunks[i], float(sims[q, i])) for i in row] for q, row in enumerate(top)], ms


def rank(model: Any, queries: Sequence[str], corpus: Corpus, batch_size: int) -> tuple[list[list[str]], float]:
    """The top-10 chunk ids of each query by cosine similarity (exact search), and ms per query."""
    found, ms = dense_candidates(model, queries, corpus, batch_size)
    return [[c.chunk_id for c, _ in row] for row in found], ms


def hybrid_ranked(dense: list[list[tuple[Chunk, float]]], keyword: Keyword, settings: RetrievalConfig) -> list[list[str]]:
    """The top-10 chunk ids of each query after fusing its dense and keyword candidates (`knowledge.search.rrf`);
    a zero weight leaves that search out, as `hybrid_search` does."""
    use_dense = settings.dense_weight > 0
    return [[h.chunk.chunk_id for h in rrf(d if use_dense else [], k, settings)[:K]] for d, k in zip(dense, keyword)]


def keyword_candidates(project_file: str, name: str, queries: Sequence[str]) -> tuple[Keyword, RetrievalConfig]:
    """Each query's keyword candidates from the knowledge base's store (no access filter: every chunk counts), and
    the knowledge base's retrieval settings."""
    from tuneloom.config import load_project
    from tuneloom.knowledge import store_for

    project = load_project(Path(project_file))
    kb = project.config.knowledge_base(name)
    if kb.retrieval.keyword_weight == 0:
        return [[] for _ in queries], kb.retrieval
    store = store_for(kb, project.workspace)
    try:
        return [store.keyword_search(q, kb.retrieval.candidates, Filter()) for q in queries], kb.retrieval
    finally:
        store.close()


Side = tuple[dict[str, np.ndarray], list[list[str]], float]  # per-query scores (dense and hybrid), dense ranking, ms


def _score(
    model: Any,
    queries: list[str],
    relevant: list[set[str]],
    corpus: Corpus,
    batch_size: int,
    keyword: tuple[Keyword, RetrievalConfig],
) -> Side:
    """Dense and hybrid scores of one embedder on the queries."""
    found, settings = keyword
    dense, ms = dense_candidates(model, queries, corpus, batch_size, max(settings.candidates, K))
    ranked = [[c.chunk_id for c, _ in row[:K]] for row in dense]
    hybrid = ranking_scores(hybrid_ranked(dense, found, settings), relevant)
    return {**ranking_scores(ranked, relevant), **{HYBRID + m: v for m, v in hybrid.items()}}, ranked, ms


def _summary(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(v.mean()) if v.size else 0.0 for m, v in scores.items()}


def _intervals(base: dict[str, np.ndarray], tuned: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    return {m: paired_bootstrap(len(base[m]), mean_metric(base[m].tolist(), tuned[m].tolist())) for m in base}


def _project_file(ctx: EvalContext) -> str:
    if ctx.train_dir is None:
        raise ValueError("retrieval evaluation needs the run's dataset folder (its manifest names the project)")
    return read_manifest(ctx.train_dir).project_file


Queries = list[tuple[str, str, set[str]]]  # (row id, query, relevant chunk ids)


def grouped_queries(linking: Linking) -> Queries:
    """One query per (row, query text), its relevant chunks merged (a heading shared by several chunks finds any)."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for p in linking.pairs:
        grouped.setdefault((str(p.row_id), p.query), set()).add(str(p.chunk_id))
    return [(row_id, query, relevant) for (row_id, query), relevant in grouped.items()]


def _examples(
    rows: list[dict[str, Any]], queries: Queries, runs: dict[str, tuple[dict[str, np.ndarray], list[list[str]]]]
) -> list[dict[str, Any]]:
    """One entry per test row in order (a document row: the mean over its pseudo-queries); rows without a grounding
    chunk are marked `unscored`."""
    positions: dict[str, list[int]] = {}
    for i, (row_id, _, _) in enumerate(queries):
        positions.setdefault(row_id, []).append(i)
    out = []
    for row in rows:
        row_id = str(row.get("id", ""))
        entry: dict[str, Any] = {"id": row.get("id"), "query": (row.get("query") or row.get("document") or "")[:300]}
        found = positions.get(row_id)
        if not found:
            out.append({**entry, "unscored": True, "score_base": 0.0, "score_tuned": 0.0})
            continue
        entry["relevant"] = sorted(queries[found[0]][2])
        for side, (scores, ranked) in runs.items():
            entry[f"score_{side}"] = round(float(scores["ndcg_at_10"][found].mean()), 4)
            entry[f"top_{side}"] = ranked[found[0]][0]
        out.append(entry)
    return out


def evaluate_retrieval(ctx: EvalContext) -> dict[str, Any]:
    """Base vs tuned embedder (and production when given) on the test questions, over the whole knowledge base."""
    task, batch = ctx.task, ctx.task.eval.batch_size
    project_file = _project_file(ctx)
    corpus = embedder.load_corpus(project_file, task.knowledge or "")
    base_model = load_embedder(ctx.base_path, task.trust_remote_code)
    linking = row_pairs(ctx.rows, corpus.chunks, base_model, settings(task))
    if not linking.pairs:
        raise ValueError(
            f"none of the {len(ctx.rows)} test rows links to a chunk of '{corpus.name}' (answers under "
            f"embedding.link_threshold {settings(task).link_threshold}, or documents it does not hold): nothing to score"
        )
    found = grouped_queries(linking)
    queries, relevant = [q for _, q, _ in found], [r for _, _, r in found]
    keyword = keyword_candidates(project_file, corpus.name, queries)
    base, base_ranked, _ = _score(base_model, queries, relevant, corpus, batch, keyword)
    ctx.tick(len(ctx.rows))
    tuned_model = load_embedder(ctx.model_dir, task.trust_remote_code)
    tuned, tuned_ranked, ms = _score(tuned_model, queries, relevant, corpus, batch, keyword)
    ctx.tick(len(ctx.rows))
    runs = {"base": (base, base_ranked), "tuned": (tuned, tuned_ranked)}
    result: dict[str, Any] = {
        "base": _summary(base),
        "tuned": {**_summary(tuned), "latency_ms_per_example": round(ms, 3)},
        "intervals": _intervals(base, tuned),
        "base_method": f"the base embedder ({task.model}) searching the same chunks",
        "example_metric": "ndcg_at_10",
        "search_corpus": {
            "knowledge_base": corpus.name,
            "chunks": len(corpus.chunks),
            "linked": len(ctx.rows) - len(linking.unlinked),
            "queries": len(found),
            "unlinked": len(linking.unlinked),
            "unlinked_ids": [row_id for row_id, _ in linking.unlinked[:50]],
            "hybrid": keyword[1].model_dump(include={"dense_weight", "keyword_weight", "rrf_k", "candidates"}),
        },
    }
    if ctx.production is not None:
        prod_model = load_embedder(Path(ctx.production.path), task.trust_remote_code)
        prod, prod_ranked, _ = _score(prod_model, queries, relevant, corpus, batch, keyword)
        ctx.tick(len(ctx.rows))
        runs["production"] = (prod, prod_ranked)
        result.update(production=_summary(prod), intervals_production=_intervals(prod, tuned))
    result["examples"] = _examples(ctx.rows, found, runs)
    return result
