"""Retrieval at data-prep time, RAFT-style: each example records the passages its prompt holds.

For every chat example the knowledge base is searched twice: with the question alone (what a served model
sees, hybrid top k) and by keyword with question plus answer (candidates for the grounding passage, the chunk
that contains most of the answer's content words). Test rows keep the question's top k; training and validation rows get
the grounding passage plus k-1 distractors (the question's other hits), shuffled, except a seeded share
(`rag.absent_share`) that gets distractors only. The chosen chunks are written into the rows, so a run
trains and evaluates on exactly these passages, whatever later happens to the index.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloom.config import RagConfig
from tuneloom.evaluate.metrics import answer_tokens
from tuneloom.knowledge.prompting import clip, with_passages
from tuneloom.knowledge.records import Chunk, Filter, Hit

Retrieve = Callable[[str, int], list[Hit]]
CANDIDATES = 20  # hits of the question + answer search considered for the grounding passage
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have i if in is it its my no not of on or our so that the "
    "their them then there this to up was we will with yes you your".split()
)


@dataclass(frozen=True)
class Retriever:
    """A knowledge base as data preparation sees it: its name, a content version, and its search."""

    name: str
    version: str
    retrieve: Retrieve  # what serving does: the question's hybrid top k
    candidates: Retrieve  # keyword search over question + answer, for the grounding passage (no embedding needed)


def content_words(text: str) -> set[str]:
    """The answer-bearing words of a text: token-F1's normalised tokens minus common function words."""
    return {t for t in answer_tokens(text) if t not in STOPWORDS}


def support(answer: str, passages: Sequence[str]) -> float:
    """Share of the answer's content words found in the passages (0.0 for an answer without any)."""
    words = content_words(answer)
    if not words:
        return 0.0
    found = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(words & found) / len(words)


def find_grounding(answer: str, hits: Sequence[Hit], min_support: float) -> tuple[Hit | None, float]:
    """The hit whose chunk supports the answer best (earliest on ties), when it reaches `min_support`."""
    best, best_support = None, 0.0
    for hit in hits:
        s = support(answer, [hit.chunk.text])
        if s > best_support:
            best, best_support = hit, s
    return (best, best_support) if best_support >= min_support else (None, best_support)


def _question_answer(row: dict[str, Any]) -> tuple[str, str]:
    messages = row["messages"]
    question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return question, messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""


def _rng(seed: int, row_id: str) -> random.Random:
    """A generator per example, so adding or removing rows does not change the others' passages."""
    return random.Random(int(hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()[:16], 16))


def _raft_context(grounding: Hit | None, hits: list[Hit], rag: RagConfig, rng: random.Random) -> list[Hit]:
    """Training prompt passages: grounding + k-1 distractors (shuffled), or k distractors for the absent share."""
    if grounding is None:
        return hits[: rag.top_k]
    distractors = [h for h in hits if h.chunk.chunk_id != grounding.chunk.chunk_id]
    if rng.random() < rag.absent_share:
        return distractors[: rag.top_k]
    context = [grounding, *distractors[: rag.top_k - 1]]
    rng.shuffle(context)
    return context


def _clipped(hit: Hit, max_chars: int) -> dict[str, Any]:
    chunk = hit.chunk.model_copy(update={"text": clip(hit.chunk.text, max_chars)})
    return Hit(chunk=chunk, score=hit.score, dense_rank=hit.dense_rank, keyword_rank=hit.keyword_rank).model_dump(
        mode="json", exclude_none=True
    )


def attach(rows: list[dict[str, Any]], retriever: Retriever, rag: RagConfig, seed: int, raft: bool) -> dict[str, int]:
    """Add each row's `knowledge` record (RAFT context when `raft`, else the question's top k); returns counts."""
    counts = {"rows": len(rows), "grounded": 0, "hit": 0, "grounding_in_prompt": 0}
    for row in rows:
        question, answer = _question_answer(row)
        hits = retriever.retrieve(question, rag.top_k + 1 if raft else rag.top_k)  # +1: k distractors when absent
        candidates = {h.chunk.chunk_id: h for h in [*hits, *retriever.candidates(f"{question}\n{answer}", CANDIDATES)]}
        grounding, supported = find_grounding(answer, list(candidates.values()), rag.min_support)
        top = [h.chunk.chunk_id for h in hits[: rag.top_k]]
        prompt = _raft_context(grounding, hits, rag, _rng(seed, row["id"])) if raft else hits[: rag.top_k]
        gid = grounding.chunk.chunk_id if grounding else None
        hit = gid is not None and gid in top
        in_context = gid is not None and any(h.chunk.chunk_id == gid for h in prompt)
        row["knowledge"] = {
            "grounding": gid,
            "support": round(supported, 4),
            "hit": hit,
            "grounding_in_prompt": in_context,
            "passages": [_clipped(h, rag.passage_chars) for h in prompt],
        }
        counts["grounded"] += gid is not None
        counts["hit"] += hit
        counts["grounding_in_prompt"] += in_context
    return counts


def passages_of(row: dict[str, Any]) -> list[Chunk]:
    """The chunks recorded in a prepared row's `knowledge` record (none for a row without one)."""
    return [Hit.model_validate(h).chunk for h in (row.get("knowledge") or {}).get("passages", [])]


def in_prompt(rows: list[dict[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """Rows whose conversations hold their recorded passages (see `tuneloom.knowledge.prompting`)."""
    return [{**r, "messages": with_passages(r["messages"], passages_of(r), max_chars)} for r in rows]


def open_retriever(project: Any, name: str) -> Retriever:
    """The project's knowledge base `name` as a `Retriever`.

    Its version covers what decides the passages: the indexed content, the embedder and the retrieval settings.
    """
    from tuneloom.knowledge import open_index

    index = open_index(project, name)
    inputs = f"{index.meta.content_version}:{index.meta.embedder_hash}:{index.kb.retrieval.model_dump_json()}"
    version = hashlib.sha256(inputs.encode()).hexdigest()[:12]

    def keyword(query: str, k: int) -> list[Hit]:
        return [
            Hit(chunk=c, score=score, keyword_rank=i)
            for i, (c, score) in enumerate(index.store.keyword_search(query, k, Filter()), 1)
        ]

    return Retriever(name=name, version=version, retrieve=lambda query, k: index.search(query, k=k), candidates=keyword)
