"""A tiny keyword retriever over a handful of chunks, standing in for a knowledge base in RAG tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import _PRODUCTS, CHAT_TASK, chat_rows, write_project
from tuneloom.evaluate.metrics import answer_tokens
from tuneloom.knowledge import raft
from tuneloom.knowledge.raft import Retriever
from tuneloom.knowledge.records import Chunk, Hit

SIDES = {"base", "base+retrieval", "tuned", "tuned+retrieval"}


def product_chunks() -> list[Chunk]:
    """One chunk per product holding every fact the test Q&A answers about it (in the same words)."""
    chunks = []
    for i, product in enumerate(_PRODUCTS):
        facts = [r["answer"] for r in chat_rows() if product in r["answer"] and r["question"]]
        chunks.append(
            Chunk(
                chunk_id=f"products.md#{i}",
                doc_id="products.md",
                doc_hash="0" * 64,
                section=["Products", product],
                position=i,
                text=" ".join(dict.fromkeys(facts)),
                tokens=len(" ".join(facts).split()),
            )
        )
    return chunks


def keyword_retriever(chunks: list[Chunk], name: str = "handbook", version: str = "v1") -> Retriever:
    """Ranks chunks by shared words with the query (ties by position): deterministic and instant."""

    def retrieve(query: str, k: int) -> list[Hit]:
        words = set(answer_tokens(query))
        scored = sorted(chunks, key=lambda c: (-len(words & set(answer_tokens(c.text))), c.position))
        return [Hit(chunk=c, score=float(len(words & set(answer_tokens(c.text))))) for c in scored[:k]]

    return Retriever(name=name, version=version, retrieve=retrieve, candidates=retrieve)


def rag_project(root: Path, chat_model: Path, cls_model: Path, monkeypatch: Any) -> tuple[Path, list[str], dict[str, str]]:
    """The tiny project whose chat task names the `handbook` knowledge base, served by `keyword_retriever` over
    `product_chunks`: (project file, overrides that turn retrieval on, the retriever's mutable version)."""
    config = write_project(root, chat_model, cls_model, max_steps=2)
    config.write_text(config.read_text() + "knowledge:\n  - name: handbook\n    sources: [{path: data/qa.jsonl}]\n")
    state = {"version": "v1"}
    monkeypatch.setattr(raft, "open_retriever", lambda project, name: keyword_retriever(product_chunks(), name, state["version"]))
    overrides = [
        f"{CHAT_TASK}:knowledge=handbook",
        f"{CHAT_TASK}:rag.top_k=2",
        f"{CHAT_TASK}:rag.passage_chars=200",
        f"{CHAT_TASK}:train.max_length=256",
        f"{CHAT_TASK}:eval.baselines=false",
        f"{CHAT_TASK}:eval.forgetting_check=false",
    ]
    return config, overrides, state
