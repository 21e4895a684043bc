"""POST /v1/embeddings: one vector per input text, as floats or base64 (little-endian float32)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.serve.dependencies import EmbeddingCall, State
from tuneloom.serve.limits import check_inputs

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(call: EmbeddingCall, state: State) -> Response:
    req = call.body
    check_inputs(state.settings, req.texts())
    vectors, tokens = await run_in_threadpool(
        state.backend.embed, call.target, req.texts(), state.settings.limits.max_prompt_tokens
    )
    if req.encoding_format == "base64":  # what the openai client asks for by default
        import base64

        import numpy as np

        vectors = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return JSONResponse(
        {"object": "list", "data": data, "model": req.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    )
