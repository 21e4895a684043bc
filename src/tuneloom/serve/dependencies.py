"""What a route asks FastAPI for: the server state, the caller's API key, and the model that answers.

`ApiKey` checks the bearer key (401) and its `serve` scope (403); `ChatCall`, `CompletionCall`, `EmbeddingCall` and `ClassifyCall`
validate the body, refuse while the server starts or drains (503), and resolve the requested model,
checking that the key may use it (403) and that it is of the kind the endpoint serves (400). A request
addressed to a model's production version may be answered by its canary (`serve.canary`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from tuneloom.errors import TuneloomError
from tuneloom.serve.auth import KeyRecord
from tuneloom.serve.responses import ApiError
from tuneloom.serve.schemas import ChatCompletionRequest, ClassifyRequest, CompletionRequest, EmbeddingRequest
from tuneloom.serve.state import ServerState
from tuneloom.serve.targets import Kind, Target, UnknownModel

Body = TypeVar("Body", ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ClassifyRequest)


async def get_state(request: Request) -> ServerState:
    return request.app.state.tuneloom


State = Annotated[ServerState, Depends(get_state)]


def authorize(request: Request, state: State) -> KeyRecord | None:
    """The caller's key record (None when the server runs without keys); 401 without a valid key, 403 for
    a key without the `serve` scope (admin holds every scope)."""
    if not state.settings.auth:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    record = state.keys.verify(token.strip()) if scheme.lower() == "bearer" else None
    if record is None:
        raise ApiError(
            401,
            "a valid API key is required: send `Authorization: Bearer KEY` (keys come from `tuneloom keys create`)",
            "authentication_error",
            "invalid_api_key",
        )
    request.state.key_id = record.id  # for the access log
    if not record.has_scope("serve"):  # console-only keys (reviewer) do not open the API
        raise ApiError(
            403,
            f"this API key lacks the 'serve' scope the /v1 API needs (it holds: {', '.join(record.scopes)}); "
            f"use a key made with `tuneloom keys create --scope serve` (the default) or an admin key",
            "permission_error",
            "missing_scope",
        )
    return record


ApiKey = Annotated[KeyRecord | None, Depends(authorize)]


def check_accepting(state: ServerState) -> None:
    """503 with Retry-After while the server starts or shuts down."""
    if not state.accepting:
        raise ApiError(
            503,
            "the server is not accepting requests (starting or shutting down)",
            "server_error",
            "unavailable",
            {"Retry-After": "5"},
        )


def check_scope(key: KeyRecord | None, model_name: str) -> None:
    """403 when the key may not use the model."""
    if key is not None and not key.allows(model_name):
        raise ApiError(403, f"this API key is not allowed to use model '{model_name}'", "permission_error", "model_not_allowed")


def choose_target(state: ServerState, ref: str, request_id: str | None) -> Target:
    """The model `ref` names, or its canary for the canary's share of production's traffic."""
    target = state.resolver.resolve(ref)
    return target if state.router is None else state.router.route(ref, target, request_id)


async def resolve_target(
    state: ServerState, ref: str, key: KeyRecord | None, kinds: tuple[Kind, ...], request_id: str | None = None
) -> Target:
    """The model a request names: 404 if unknown, 403 outside the key's scope, 400 if of the wrong kind."""
    try:
        target = await run_in_threadpool(choose_target, state, ref, request_id)
    except UnknownModel as exc:
        raise ApiError(404, str(exc), code="model_not_found") from None
    except TuneloomError as exc:
        raise ApiError(500, str(exc), "server_error") from None
    check_scope(key, target.name)
    if target.kind not in kinds:
        raise ApiError(
            400,
            f"model '{ref}' is a {target.kind} model; this endpoint needs a {' or '.join(kinds)} model",
            code="wrong_model_kind",
        )
    return target


@dataclass(frozen=True)
class ModelCall(Generic[Body]):
    """A request admitted to a model: its body, the caller's key, the model that answers, and when it arrived."""

    body: Body
    key: KeyRecord | None
    target: Target
    started: float  # time.monotonic() once admitted, before the model is resolved


async def admit(
    state: ServerState, body: Body, key: KeyRecord | None, kinds: tuple[Kind, ...], request: Request
) -> ModelCall[Body]:
    check_accepting(state)
    started = time.monotonic()
    request_id = request.headers.get("x-request-id")
    return ModelCall(body, key, await resolve_target(state, body.model, key, kinds, request_id), started)


async def chat_call(req: ChatCompletionRequest, state: State, key: ApiKey, request: Request) -> ModelCall[ChatCompletionRequest]:
    return await admit(state, req, key, ("chat",), request)


async def completion_call(req: CompletionRequest, state: State, key: ApiKey, request: Request) -> ModelCall[CompletionRequest]:
    return await admit(state, req, key, ("chat",), request)


async def embedding_call(req: EmbeddingRequest, state: State, key: ApiKey, request: Request) -> ModelCall[EmbeddingRequest]:
    return await admit(state, req, key, ("embedding",), request)


async def classify_call(req: ClassifyRequest, state: State, key: ApiKey, request: Request) -> ModelCall[ClassifyRequest]:
    return await admit(state, req, key, ("classification",), request)


ChatCall = Annotated[ModelCall[ChatCompletionRequest], Depends(chat_call)]
CompletionCall = Annotated[ModelCall[CompletionRequest], Depends(completion_call)]
EmbeddingCall = Annotated[ModelCall[EmbeddingRequest], Depends(embedding_call)]
ClassifyCall = Annotated[ModelCall[ClassifyRequest], Depends(classify_call)]
