"""Middleware: the request body limit (413), and per-request metrics and access log."""

from __future__ import annotations

import json
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
    """Reject request bodies over the limit (413, OpenAI error format) before a route sees them.

    A declared Content-Length over the limit is refused at once; any other body (chunked, or sent
    longer than declared) is read up to the limit and handed on only if it fits.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self.too_big(scope, receive, send)
        body, more = await self.read_up_to_limit(receive)
        if body is None:  # the client went away while sending
            return None
        if more:
            return await self.too_big(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect a streaming route waits for

        return await self.app(scope, replay, send)

    async def read_up_to_limit(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The body read until its end or past the limit (None if the client left); True if over the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, False
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

    async def too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(413, f"request body over the {self.limit}-byte limit", code="body_too_large")
        scope["app"].state.tuneloom.metrics.rejected.labels(error.code).inc()
        await error.response()(scope, receive, send)


async def log_and_measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Count, time and log every request once its last byte is sent (a stream's latency is its whole stream)."""
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception:  # a failure no handler answered: still an OpenAI error, counted and logged
        access_log.exception("%s %s failed", request.method, request.url.path)
        response = ApiError(500, "internal server error (see the server log)", "server_error", "internal_error").response()
    done = partial(log_request, request, started)
    body = getattr(response, "body_iterator", None)
    if body is None:
        done(response.status_code)
        return response
    response.body_iterator = measured(body, response.status_code, done)  # type: ignore[attr-defined]  # only streaming responses have a body_iterator (checked above)
    return response


def log_request(request: Request, started: float, status: int) -> None:
    """Metrics and one access-log line: method, endpoint, status, milliseconds and key id (never the key)."""
    endpoint = request.url.path if request.url.path in ROUTES else "other"
    elapsed = time.perf_counter() - started
    metrics = request.app.state.tuneloom.metrics
    metrics.requests.labels(endpoint, str(status)).inc()
    metrics.latency.labels(endpoint).observe(elapsed)
    access_log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %d %.0fms key=%s",
        request.method,
        endpoint,
        status,
        elapsed * 1000,
        getattr(request.state, "key_id", "-"),
    )


async def measured(body: AsyncIterator[bytes], status: int, done: Callable[[int], None]) -> AsyncIterator[bytes]:
    """The response body unchanged, calling `done` after its last chunk (or when the client goes away).

    A stream that fails after its headers are sent ends with an error event and is counted as a 500.
    """
    try:
        async for chunk in body:
            yield chunk
    except Exception:
        access_log.exception("stream failed")
        status = 500
        error = {"message": "internal server error (see the server log)", "type": "server_error", "code": "internal_error"}
        yield f"data: {json.dumps({'error': error})}\n\n".encode()
    finally:
        done(status)
