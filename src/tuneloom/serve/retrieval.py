"""Retrieval inside a chat request: the caller's question searched in the model's knowledge base,
within the access tags its key may see, the passages put in the prompt as training put them,
and the sources listed in the answer (`tuneloom_sources`)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from tuneloom.knowledge.records import Filter, Hit
from tuneloom.serve.auth import KeyRecord
from tuneloom.serve.knowledge import KnowledgeUnavailable
from tuneloom.serve.responses import ApiError
from tuneloom.serve.state import ServerState

SOURCES_FIELD = "tuneloom_sources"  # the OpenAI response's extension field


def key_filter(key: KeyRecord | None, where: dict[str, str] | None = None) -> Filter:
    """What the caller may see: its key's tags (every tag without auth), plus exact metadata matches."""
    return Filter(allowed_tags=key.allowed_tags() if key is not None else None, where=where or {})


async def search(state: ServerState, knowledge: str, query: str, k: int, flt: Filter) -> list[Hit]:
    """A knowledge-base search off the event loop; 503 while the knowledge base cannot be opened or searched."""
    try:
        return await run_in_threadpool(state.knowledge.search, knowledge, query, k, flt)
    except KnowledgeUnavailable as exc:
        raise ApiError(503, str(exc), "server_error", "knowledge_unavailable", {"Retry-After": "5"}) from None


def last_question(messages: list[dict[str, str]]) -> str:
    """The text searched for: the conversation's last user turn."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def sources(hits: list[Hit]) -> list[dict[str, Any]]:
    """The answer's sources, numbered as the prompt numbers its passages ([1], [2]...)."""
    return [
        {
            "index": i,
            "document": hit.chunk.doc_id,
            "section": list(hit.chunk.section),
            "chunk_id": hit.chunk.chunk_id,
            "score": hit.score,
        }
        for i, hit in enumerate(hits, 1)
    ]
