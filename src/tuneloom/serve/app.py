"""The FastAPI application: OpenAI-compatible routes, feedback, health, readiness and metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tuneloom.config import Project, ServeConfig
from tuneloom.data.redact import redact_json, redactor_for
from tuneloom.errors import TuneloomError
from tuneloom.serve.auth import KeyRecord, KeyStore, keys_path
from tuneloom.serve.backends import Generation, make_backend
from tuneloom.serve.engine import Overloaded, SamplingParams
from tuneloom.serve.feedback import FeedbackStore
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.responses import ApiError, chat_prompt, collect, raise_for_abnormal, sse
from tuneloom.serve.schemas import (
    ChatCompletionRequest,
    ClassifyRequest,
    CompletionRequest,
    EmbeddingRequest,
    FeedbackRequest,
    SamplingFields,
)
from tuneloom.serve.targets import Target, TargetResolver, UnknownModel

access_log = logging.getLogger("tuneloom.serve.access")
prompt_log = logging.getLogger("tuneloom.serve.prompts")
ROUTES = {"/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/classify", "/v1/feedback",
          "/health", "/ready", "/metrics"}


@dataclass
class ServerState:
    project: Project
    settings: ServeConfig
    resolver: TargetResolver
    backend: Any
    keys: KeyStore
    feedback: FeedbackStore
    metrics: ServeMetrics
    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)


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


def create_app(project: Project, settings: ServeConfig | None = None) -> FastAPI:
    """The server for a project; `settings` defaults to the project file's `serve:` section."""
    settings = settings or project.config.serve
    metrics = ServeMetrics()
    redactor = redactor_for(settings.redact)
    state = ServerState(
        project=project, settings=settings, resolver=TargetResolver(project, settings),
        backend=make_backend(settings, metrics), keys=KeyStore(keys_path(project.workspace)),
        feedback=FeedbackStore.for_workspace(project.workspace, settings.feedback_db), metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.auth and not [k for k in state.keys.list() if k.revoked is None]:
            access_log.warning("no API keys yet: every /v1 request is refused until `tuneloom keys create`")
        state.ready = True
        yield
        state.ready, state.draining = False, True
        await run_in_threadpool(state.backend.close, settings.shutdown_grace_s)
        state.feedback.close()

    app = FastAPI(title="Tuneloom", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tuneloom = state
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.middleware("http")
    async def log_and_measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except ApiError as exc:  # raised by the body limit while a route reads the body
            response = exc.response()
        endpoint = request.url.path if request.url.path in ROUTES else "other"

        def done() -> None:  # when the last byte is sent: a streamed answer's latency is its whole stream
            elapsed = time.perf_counter() - started
            metrics.requests.labels(endpoint, str(response.status_code)).inc()
            metrics.latency.labels(endpoint).observe(elapsed)
            access_log.info("%s %s %d %.0fms key=%s", request.method, endpoint, response.status_code, elapsed * 1000,
                            getattr(request.state, "key_id", "-"))

        body = getattr(response, "body_iterator", None)
        if body is None:
            done()
            return response

        async def measured() -> AsyncIterator[bytes]:
            try:
                async for chunk in body:
                    yield chunk
            finally:
                done()

        response.body_iterator = measured()
        return response

    app.add_middleware(BodyLimit, limit=settings.limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        if exc.status in (401, 403, 413, 429, 503):
            metrics.rejected.labels(exc.code or str(exc.status)).inc()
        return exc.response()

    @app.exception_handler(TuneloomError)
    async def _tuneloom_error(_: Request, exc: TuneloomError) -> JSONResponse:  # e.g. a model folder that cannot load
        access_log.error("request failed: %s", exc)
        return ApiError(500, str(exc), "server_error", "model_unavailable").response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return ApiError(400, problems or "invalid request").response()

    def authorize(request: Request) -> KeyRecord | None:
        if not settings.auth:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        record = state.keys.verify(token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise ApiError(401, "a valid API key is required: send `Authorization: Bearer KEY` "
                                "(keys come from `tuneloom keys create`)", "authentication_error", "invalid_api_key")
        request.state.key_id = record.id
        return record

    def accepting() -> None:
        if state.draining or not state.ready:
            raise ApiError(503, "the server is not accepting requests (starting or shutting down)", "server_error",
                           "unavailable", {"Retry-After": "5"})

    async def target_for(ref: str, key: KeyRecord | None, kinds: tuple[str, ...]) -> Target:
        try:
            target = await run_in_threadpool(state.resolver.resolve, ref)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), code="model_not_found") from None
        except TuneloomError as exc:
            raise ApiError(500, str(exc), "server_error") from None
        if key is not None and not key.allows(target.name):
            raise ApiError(403, f"this API key is not allowed to use model '{target.name}'", "permission_error",
                           "model_not_allowed")
        if target.kind not in kinds:
            raise ApiError(400, f"model '{ref}' is a {target.kind} model; this endpoint needs a {' or '.join(kinds)} model",
                           code="wrong_model_kind")
        return target

    def sampling(req: SamplingFields) -> tuple[SamplingParams, int]:
        limits = settings.limits
        max_tokens = req.max_completion_tokens or req.max_tokens or limits.max_tokens
        if max_tokens > limits.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}",
                           code="max_tokens_over_limit")
        if req.n > limits.max_n:
            raise ApiError(400, f"n {req.n} is over this server's limit of {limits.max_n}", code="n_over_limit")
        return SamplingParams(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, stop=req.stops(),
                              seed=req.seed), req.n

    def check_prompt(ids: list[int]) -> None:
        if len(ids) > settings.limits.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, over this server's limit of "
                                f"{settings.limits.max_prompt_tokens}", code="prompt_too_long")

    def start(target: Target, ids: list[int], params: SamplingParams, n: int) -> Generation:
        try:
            return state.backend.start(target, ids, params, n, time.monotonic() + settings.request_timeout_s)
        except Overloaded as exc:
            raise ApiError(429, f"server busy: {exc}; retry later", "rate_limit_error", "overloaded",
                           {"Retry-After": str(exc.retry_after)}) from None

    async def record(completion_id: str, endpoint: str, model: str, target: Target, key: KeyRecord | None,
                     request_body: Any, response_body: Any, finish: str | None, prompt_tokens: int,
                     completion_tokens: int, started: float) -> None:
        if redactor is not None and settings.store_prompts:
            request_body, response_body = redact_json([request_body, response_body], redactor)
        await run_in_threadpool(
            state.feedback.record_completion, id=completion_id, endpoint=endpoint, model=model, served=target.served,
            key_id=key.id if key else None, request=request_body if settings.store_prompts else None,
            response=response_body if settings.store_prompts else None, finish_reason=finish,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_ms=int((time.monotonic() - started) * 1000))

    def observe(generation: Generation, started: float, tokens: int) -> None:
        if generation.first_token_at is not None:
            metrics.ttft.observe(generation.first_token_at - started)
            spent = time.monotonic() - generation.first_token_at
            if tokens > 1 and spent > 0:
                metrics.tokens_per_s.observe((tokens - 1) / spent)
        metrics.generated.inc(tokens)

    async def generate(request: Request, req: SamplingFields, key: KeyRecord | None, chat: bool) -> Response:
        accepting()
        started = time.monotonic()
        target = await target_for(req.model, key, ("chat",))
        params, n = sampling(req)
        tokenizer = await run_in_threadpool(state.backend.tokenizer, target)  # loads the base model on first use
        if chat:
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in req.messages]  # type: ignore[attr-defined]
            ids, messages = chat_prompt(tokenizer, messages, target.system_prompt)
            request_body: Any = {"messages": messages}
        else:
            ids = tokenizer(req.prompt)["input_ids"]  # type: ignore[attr-defined]
            request_body = {"prompt": req.prompt}  # type: ignore[attr-defined]
        check_prompt(ids)
        if settings.log_prompts:
            prompt_log.info("%s %s", req.model, json.dumps(request_body, ensure_ascii=False))
        request_body.update(params.__dict__, n=n)
        generation = start(target, ids, params, n)
        completion_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = sse(generation, chat, completion_id, created, req.model, n, include_usage, len(ids),
                          lambda texts, finish, tokens: record(completion_id, obj, req.model, target, key, request_body,
                                                               {"choices": texts}, finish, len(ids), tokens, started),
                          lambda tokens: observe(generation, started, tokens))
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        texts, finishes, tokens = await collect(generation, request, n)
        observe(generation, started, sum(tokens))
        raise_for_abnormal(finishes)
        choices = [({"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None, "finish_reason": f}
                    if chat else {"index": i, "text": t, "logprobs": None, "finish_reason": f})
                   for i, (t, f) in enumerate(zip(texts, finishes))]
        usage = {"prompt_tokens": len(ids), "completion_tokens": sum(tokens), "total_tokens": len(ids) + sum(tokens)}
        await record(completion_id, obj, req.model, target, key, request_body, {"choices": texts}, finishes[0],
                     len(ids), sum(tokens), started)
        return JSONResponse({"id": completion_id, "object": obj, "created": created, "model": req.model,
                             "system_fingerprint": target.served, "choices": choices, "usage": usage})

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request,
                               key: KeyRecord | None = Depends(authorize)) -> Response:
        return await generate(request, req, key, chat=True)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request, key: KeyRecord | None = Depends(authorize)) -> Response:
        return await generate(request, req, key, chat=False)

    def check_inputs(texts: list[str]) -> None:
        if not texts or len(texts) > settings.limits.max_inputs:
            raise ApiError(400, f"input takes 1 to {settings.limits.max_inputs} texts", code="too_many_inputs")

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest, key: KeyRecord | None = Depends(authorize)) -> Response:
        accepting()
        target = await target_for(req.model, key, ("embedding",))
        check_inputs(req.texts())
        vectors, tokens = await run_in_threadpool(state.backend.embed, target, req.texts(), settings.limits.max_prompt_tokens)
        if req.encoding_format == "base64":  # what the openai client asks for by default
            import base64

            import numpy as np

            vectors = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": req.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/classify")
    async def classify(req: ClassifyRequest, key: KeyRecord | None = Depends(authorize)) -> Response:
        accepting()
        started = time.monotonic()
        target = await target_for(req.model, key, ("classification",))
        check_inputs(req.texts())
        scores, tokens = await run_in_threadpool(state.backend.classify, target, req.texts(),
                                                 settings.limits.max_prompt_tokens)
        data = []
        for i, row in enumerate(scores):
            label = max(row, key=row.__getitem__)
            data.append({"index": i, "label": label, "score": row[label], "scores": row})
        completion_id = f"clf-{uuid.uuid4().hex}"
        await record(completion_id, "classification", req.model, target, key, {"input": req.texts()},
                     {"labels": [d["label"] for d in data]}, None, tokens, 0, started)
        return JSONResponse({"id": completion_id, "object": "classification", "created": int(time.time()),
                             "model": req.model, "system_fingerprint": target.served, "data": data,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/feedback")
    async def feedback(req: FeedbackRequest, key: KeyRecord | None = Depends(authorize)) -> Response:
        row = await run_in_threadpool(state.feedback.completion, req.completion_id)
        if row is None:
            raise ApiError(404, f"no completion with id '{req.completion_id}'", code="completion_not_found")
        if key is not None and not key.allows(row.served.rpartition(":")[0] or row.served):
            raise ApiError(403, "this API key may not rate answers of that model", "permission_error", "model_not_allowed")
        feedback_id = await run_in_threadpool(state.feedback.record_feedback, req.completion_id, req.rating,
                                              req.correction, req.tags, key.id if key else None)
        return JSONResponse({"id": feedback_id, "object": "feedback", "completion_id": req.completion_id, "stored": True})

    @app.get("/v1/models")
    async def models(key: KeyRecord | None = Depends(authorize)) -> Response:
        try:
            names = await run_in_threadpool(state.resolver.names)
        except TuneloomError as exc:
            raise ApiError(500, str(exc), "server_error") from None
        data = [{"id": name, "object": "model", "created": int(state.started), "owned_by": owner}
                for name, owner in names if key is None or key.allows(name)]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        running, waiting = state.backend.load()
        body = {"ready": state.ready and not state.draining, "backend": state.backend.name,
                "running": running, "waiting": waiting}
        return JSONResponse(body, status_code=200 if body["ready"] else 503,
                            headers={} if body["ready"] else {"Retry-After": "5"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    return app


def serve(project: Project, host: str | None = None, port: int | None = None) -> None:
    """Run the server until interrupted (SIGINT/SIGTERM: stop accepting, finish running requests, exit)."""
    import uvicorn

    settings = project.config.serve
    app = create_app(project, settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host or settings.host, port=port if port is not None else settings.port, access_log=False,
                log_level="info", timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1)
