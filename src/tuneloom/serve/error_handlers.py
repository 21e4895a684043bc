"""Exceptions -> answers in OpenAI's error format (and the rejection metric)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tuneloom.errors import TuneloomError
from tuneloom.serve.middleware import access_log
from tuneloom.serve.responses import ApiError


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    if exc.status in (401, 403, 413, 429, 503):
        request.app.state.tuneloom.metrics.rejected.labels(exc.code or str(exc.status)).inc()
    return exc.response()


async def tuneloom_error(_: Request, exc: TuneloomError) -> JSONResponse:
    """A TuneloomError a route did not turn into an answer, e.g. a model folder that cannot load: 500."""
    access_log.error("request failed: %s", exc)
    return ApiError(500, str(exc), "server_error", "model_unavailable").response()


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that fails validation: 400 naming each field and what is wrong with it."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
    return ApiError(400, problems or "invalid request").response()


def add_error_handlers(app: FastAPI) -> None:
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(TuneloomError)(tuneloom_error)
    app.exception_handler(RequestValidationError)(invalid_request)
