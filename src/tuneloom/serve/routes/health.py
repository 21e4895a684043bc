"""GET /v1/models (what the key may use), /health, /ready (503 while starting or draining) and /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.errors import TuneloomError
from tuneloom.serve.dependencies import ApiKey, State
from tuneloom.serve.responses import ApiError

router = APIRouter()


@router.get("/v1/models")
async def models(key: ApiKey, state: State) -> Response:
    try:
        names = await run_in_threadpool(state.resolver.names)
    except TuneloomError as exc:
        raise ApiError(500, str(exc), "server_error") from None
    data = [
        {"id": name, "object": "model", "created": int(state.started), "owned_by": owner}
        for name, owner in names
        if key is None or key.allows(name)
    ]
    return JSONResponse({"object": "list", "data": data})


@router.get("/health")
async def health() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(state: State) -> Response:
    """503 while starting or draining, or when a dependency failed to load (named in `failed`)."""
    running, waiting = state.backend.load()
    ok = state.accepting and not state.failed
    body: dict[str, object] = {"ready": ok, "backend": state.backend.name, "running": running, "waiting": waiting}
    if state.failed:
        body["failed"] = state.failed
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})


@router.get("/metrics")
async def prometheus(state: State) -> Response:
    return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4")
