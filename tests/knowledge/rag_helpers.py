"""A tiny keyword retriever over a handful of chunks, standing in for a knowledge base in RAG tests."""

from __future__ import annotations

from tests.conftest import _PRODUCTS, chat_rows
from tuneloom.evaluate.metrics import answer_tokens
from tuneloom.knowledge.raft import Retriever
from tuneloom.knowledge.records import Chunk, Hit


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
