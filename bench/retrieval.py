"""Benchmark knowledge-base indexing and hybrid search against a plain sentence-transformers + numpy baseline.

Two parts, in one run:

- build: N synthetic passages (default 1,000; one chunk each), indexed by `tuneloom.knowledge.build_index`
  (read files, chunk with the tokenizer, embed with bf16 autocast where the CPU has it, write LanceDB with
  its full-text index) versus the baseline: `SentenceTransformer.encode` of every passage (fp32, default
  batch size) plus an exact numpy top-10 search. Model loading is outside both timings; the best of
  `--rounds` runs counts for each side.
- query: each store in `STORES` filled with synthetic chunks (10,000 and 100,000 by default; clustered
  unit vectors standing in for embeddings, so 100k chunks need no hours of encoding) and queried through
  `hybrid_search` (query embedding with MiniLM + dense + BM25 + fusion, top 10). At sizes where the store
  uses an approximate vector index, `ann_recall_at_10` compares its dense top 10 with exact numpy search.

Prints as its last line one JSON object: chunks, chunks_per_s, baseline_chunks_per_s, ratio (wall clock) and
cpu_ratio (process CPU time, steadier on a shared machine), query_p50_ms, query_p95_ms and query_cpu_p95_ms
({store: {size: ms}}), ann_recall_at_10 ({store: {size: recall}}), peak_rss_mb, and the 1-minute load average
before and after the query part (other work on the machine slows every figure).
A server store joins by adding an entry to `STORES`.
Usage: python bench/retrieval.py [--chunks N] [--sizes 10000,100000] [--stores lancedb,pgvector]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tuneloom.catalog import resolve_model
from tuneloom.config import RetrievalConfig, load_project
from tuneloom.knowledge import Chunk, Filter, VectorStore, build_index
from tuneloom.knowledge.embedder import Embedder
from tuneloom.knowledge.lance_store import LanceStore
from tuneloom.knowledge.search import hybrid_search

DIM = 384
TOPICS = ["returns", "refunds", "shipping", "warranty", "invoices", "passwords", "routers", "cameras", "batteries"]


def _vocabulary() -> list[str]:
    """Whole English words of the MiniLM vocabulary (one token each), so passage lengths in tokens are known."""
    vocab = (resolve_model("all-minilm-l6-v2") / "vocab.txt").read_text().split("\n")
    return [w for w in vocab[2000:] if w.isalpha() and w.isascii() and len(w) > 2][:8000]


WORDS = _vocabulary()


def passages(n: int, rng: np.random.Generator) -> list[str]:
    """Synthetic policy-like passages of 20 to 150 words (one MiniLM chunk each)."""
    out = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(20, 150))).tolist()
        out.append(f"The {TOPICS[i % len(TOPICS)]} rule {i}: " + " ".join(words) + ".")
    return out


@dataclass
class StoreCase:
    """How the bench makes a store in a scratch folder and finishes it after loading."""

    make: Callable[[Path], VectorStore]
    finish: Callable[[VectorStore], None]
    approximate_from: int  # chunk count from which its dense search is approximate


def _lance_finish(store: VectorStore) -> None:
    assert isinstance(store, LanceStore)
    store.finish()


def _pgvector(folder: Path) -> VectorStore:
    """The server store on TUNELOOM_BENCH_PGVECTOR_URL, or on a PostgreSQL with pgvector started from the
    `pgserver` wheel (a dev dependency) in a scratch folder; its tables are dropped first, so reruns start empty."""
    from tuneloom.knowledge.pg_store import PgVectorStore

    global _PG_URL
    if _PG_URL is None:
        _PG_URL = os.environ.get("TUNELOOM_BENCH_PGVECTOR_URL")
    if _PG_URL is None:
        import pgserver

        data = Path(tempfile.mkdtemp(prefix="tuneloom-bench-pg-"))  # not under `folder`: the server outlives it
        _PG_URL = pgserver.get_server(data, cleanup_mode="delete").get_uri()
    PgVectorStore(_PG_URL, "bench-retrieval").drop()
    return PgVectorStore(_PG_URL, "bench-retrieval")


_PG_URL: str | None = None

STORES: dict[str, StoreCase] = {
    "lancedb": StoreCase(lambda folder: LanceStore(folder / "lance", ann_threshold=50_000), _lance_finish, 50_000),
    "pgvector": StoreCase(_pgvector, lambda store: store.finish(), 1),  # HNSW from the first chunk
}


def baseline_build(texts: list[str], folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the plain pipeline: encode every passage, then one exact numpy top-10 search."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    model.encode(texts[:8])  # warm-up outside the timing, like ours (the embedder is loaded before timing)
    started, cpu = time.perf_counter(), time.process_time()
    matrix = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    query = model.encode(["warranty for batteries"], normalize_embeddings=True)
    np.argpartition(-(matrix @ query[0]), 10)[:10]
    return time.perf_counter() - started, time.process_time() - cpu


def tuneloom_build(texts: list[str], root: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `build_index` over the passages as files (reading, chunking, embedding, storing)."""
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (docs / f"p{i:06d}.txt").write_text(text)
    (root / "qa.jsonl").write_text('{"q": "a", "a": "b"}\n')
    (root / "tuneloom.yaml").write_text(
        "project: bench\ntasks:\n  - name: t\n    type: chat_sft\n    model: smollm2-135m-instruct\n"
        "    data: {sources: [{path: qa.jsonl}], columns: {prompt: q, response: a}}\n"
        "knowledge:\n  - name: kb\n    sources: [{path: docs}]\n"
    )
    project = load_project(root / "tuneloom.yaml")
    cpu = time.process_time()
    stats = build_index(project, "kb", progress=False)
    assert stats.embedded_chunks == len(texts), stats
    return stats.seconds, time.process_time() - cpu


def clustered_vectors(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """Unit vectors scattered around topic centres (cosine ~0.7 to their centre), like sentence embeddings."""
    picks = rng.integers(0, len(centers), size=n)
    vectors = centers[picks] + rng.normal(0, 0.05, size=(n, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def fill(store: VectorStore, n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    """`n` synthetic chunks in 10,000-row batches; returns their vectors (for exact search)."""
    all_vectors = []
    for start in range(0, n, 10_000):
        texts = passages(min(10_000, n - start), rng)
        chunks = [
            Chunk(chunk_id=f"d{start + i}#0", doc_id=f"d{start + i}", doc_hash="x", position=0, text=t, tokens=len(t.split()))
            for i, t in enumerate(texts)
        ]
        vectors = clustered_vectors(len(chunks), rng, centers)
        store.upsert(chunks, vectors)
        all_vectors.append(vectors)
    return np.concatenate(all_vectors)


def query_latency(case: StoreCase, n: int, embedder: Embedder, queries: int, rng: np.random.Generator) -> dict[str, float]:
    """p50/p95 of hybrid top-10 searches, and the dense top-10 recall against exact search when approximate."""
    centers = rng.normal(size=(1000, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = case.make(Path(tmp))
        vectors = fill(store, n, rng, centers)
        case.finish(store)
        settings = RetrievalConfig(top_k=10)
        texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))).tolist()) for _ in range(queries + 5)]
        times, cpu_times = [], []
        for i, text in enumerate(texts):
            started, cpu = time.perf_counter(), time.process_time()
            hybrid_search(store, text, embedder.encode_query, settings, 10, Filter())
            if i >= 5:  # the first few warm caches
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - cpu) * 1000)
        result = {
            "p50": float(np.percentile(times, 50)),
            "p95": float(np.percentile(times, 95)),
            "cpu_p95": float(np.percentile(cpu_times, 95)),
        }
        if n >= case.approximate_from:
            result["recall"] = ann_recall(store, vectors, rng)
        store.close()
    return result


def ann_recall(store: VectorStore, vectors: np.ndarray, rng: np.random.Generator, probes: int = 50) -> float:
    """Share of the exact dense top 10 that the store's (approximate) dense search returns, over `probes` queries."""
    found = 0
    for row in rng.integers(0, len(vectors), size=probes):
        query = vectors[row] + rng.normal(0, 0.02, size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = {f"d{i}#0" for i in np.argpartition(-(vectors @ query), 10)[:10]}
        approx = {c.chunk_id for c, _ in store.dense_search(query, 10, Filter())}
        found += len(exact & approx)
    return found / (10 * probes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1000, help="Passages for the build comparison.")
    parser.add_argument("--sizes", default="10000,100000", help="Chunk counts for the query latencies.")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="Build timings per side; the best counts.")
    parser.add_argument("--stores", default=",".join(STORES), help="Stores to query (comma-separated).")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folder = resolve_model("all-minilm-l6-v2")
    embedder = Embedder("all-minilm-l6-v2")  # loads (and caches) the model outside the timings
    texts = passages(args.chunks, rng)
    ours, base = [], []
    for _ in range(args.rounds):
        base.append(baseline_build(texts, folder))
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(tuneloom_build(texts, Path(tmp)))
    load_before = os.getloadavg()[0]
    p50: dict[str, dict[str, float]] = {}
    p95: dict[str, dict[str, float]] = {}
    cpu95: dict[str, dict[str, float]] = {}
    recall: dict[str, dict[str, float]] = {}
    for name in args.stores.split(","):
        case = STORES[name]
        for n in (int(s) for s in args.sizes.split(",")):
            result = query_latency(case, n, embedder, args.queries, rng)
            p50.setdefault(name, {})[str(n)] = round(result["p50"], 2)
            p95.setdefault(name, {})[str(n)] = round(result["p95"], 2)
            cpu95.setdefault(name, {})[str(n)] = round(result["cpu_p95"], 2)
            if "recall" in result:
                recall.setdefault(name, {})[str(n)] = round(result["recall"], 3)
    wall, cpu = min(w for w, _ in ours), min(c for _, c in ours)
    base_wall, base_cpu = min(w for w, _ in base), min(c for _, c in base)
    line = {
        "chunks": args.chunks,
        "chunks_per_s": round(args.chunks / wall, 1),
        "baseline_chunks_per_s": round(args.chunks / base_wall, 1),
        "ratio": round(base_wall / wall, 2),
        "cpu_ratio": round(base_cpu / cpu, 2),
        "query_p50_ms": p50,
        "query_p95_ms": p95,
        "query_cpu_p95_ms": cpu95,
        "ann_recall_at_10": recall,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
