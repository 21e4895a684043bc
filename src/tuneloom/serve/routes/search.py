"""POST /v1/search: retrieval only, within the access tags the caller's key may see."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from tuneloom.errors import ProjectFileError
from tuneloom.serve.dependencies import ApiKey, State, check_accepting, resolve_target
from tuneloom.serve.responses import ApiError
from tuneloom.serve.retrieval import key_filter, search
from tuneloom.serve.schemas import SearchRequest
from tuneloom.serve.state import ServerState

router = APIRouter()


@router.post("/v1/search")
async def search_knowledge(req: SearchRequest, key: ApiKey, state: State) -> Response:
    """The top chunks for `query`; a key scoped to models reaches a knowledge base by one of its models or,
    by name, when its scope lists the knowledge base's name."""
    check_accepting(state)
    name, top_k = await knowledge_of(state, req, key)
    hits = await search(state, name, req.query, req.k or top_k, key_filter(key, req.where))
    data = [
        {
            "object": "search.result",
            "index": i,
            "chunk_id": hit.chunk.chunk_id,
            "document": hit.chunk.doc_id,
            "section": list(hit.chunk.section),
            "text": hit.chunk.text,
            "metadata": dict(hit.chunk.metadata),
            "score": hit.score,
        }
        for i, hit in enumerate(hits)
    ]
    return JSONResponse({"object": "list", "knowledge": name, "data": data})


async def knowledge_of(state: ServerState, req: SearchRequest, key: ApiKey) -> tuple[str, int]:
    """The knowledge base a search names (404 unknown, 403 outside the key's scope) and its default top k."""
    if req.model is not None:
        target = await resolve_target(state, req.model, key, ("chat",))
        if target.grounding is None:
            raise ApiError(400, f"model '{req.model}' retrieves from no knowledge base", code="no_knowledge")
        name = target.grounding.knowledge
    else:
        assert req.knowledge is not None
        name = req.knowledge
        if key is not None and not key.allows(name):
            raise ApiError(
                403, f"this API key may not search knowledge base '{name}'", "permission_error", "knowledge_not_allowed"
            )
    try:
        kb = state.project.config.knowledge_base(name)
    except ProjectFileError:
        raise ApiError(404, f"knowledge base '{name}' is not served here", code="knowledge_not_found") from None
    return name, kb.retrieval.top_k
