"""Middleware: the request body limit (413), and per-request metrics and access log."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneloom.serve.responses import ApiError

access_log = logging.getLogger("tuneloom.serve.access")
ROUTES = {
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/classify",
    "/v1/feedback",
    "/health",
    "/ready",
    "/metrics",
}


class BodyLimit:
    """Reject request bodies over the limit (413) before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = ApiError(413, f"request body over the {self.limit}-byte limit", code="body_too_large").response()
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, f"request body over the {self.limit}-byte limit", code="body_too_large")
            return message

        return await self.app(scope, limited, send)


async def log_and_measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count, time and log every request once its last byte is sent (a stream's latency is its whole stream)."""
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except ApiError as exc:  # raised by the body limit while a route reads the body
        response = exc.response()
    done = partial(log_request, request, response, started)
    body = getattr(response, "body_iterator", None)
    if body is None:
        done()
        return response
    response.body_iterator = measured(body, done)  # type: ignore[attr-defined]  # only streaming responses have a body_iterator (checked above)
    return response


def log_request(request: Request, response: Response, started: float) -> None:
    """Metrics and one access-log line: method, endpoint, status, milliseconds and key id (never the key)."""
    endpoint = request.url.path if request.url.path in ROUTES else "other"
    elapsed = time.perf_counter() - started
    metrics = request.app.state.tuneloom.metrics
    metrics.requests.labels(endpoint, str(response.status_code)).inc()
    metrics.latency.labels(endpoint).observe(elapsed)
    access_log.info(
        "%s %s %d %.0fms key=%s",
        request.method,
        endpoint,
        response.status_code,
        elapsed * 1000,
        getattr(request.state, "key_id", "-"),
    )


async def measured(body: AsyncIterator[bytes], done: Callable[[], None]) -> AsyncIterator[bytes]:
    """The response body unchanged, calling `done` after its last chunk (or when the client goes away)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        done()
