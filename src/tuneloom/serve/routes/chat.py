"""POST /v1/chat/completions and /v1/completions: whole answers or server-sent events."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tuneloom.knowledge.prompting import with_passages
from tuneloom.knowledge.records import Hit
from tuneloom.serve.backends import Generation
from tuneloom.serve.dependencies import ChatCall, CompletionCall, ModelCall, State
from tuneloom.serve.engine import Overloaded, SamplingParams
from tuneloom.serve.limits import check_prompt, sampling
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.recording import record_answer
from tuneloom.serve.responses import ApiError, chat_prompt, collect, raise_for_abnormal, sse
from tuneloom.serve.retrieval import SOURCES_FIELD, key_filter, last_question, search, sources
from tuneloom.serve.schemas import ChatCompletionRequest, CompletionRequest
from tuneloom.serve.state import ServerState
from tuneloom.serve.targets import Target

prompt_log = logging.getLogger("tuneloom.serve.prompts")
router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(call: ChatCall, request: Request, state: State) -> Response:
    return await generate(state, request, call)


@router.post("/v1/completions")
async def completions(call: CompletionCall, request: Request, state: State) -> Response:
    return await generate(state, request, call)


@dataclass(frozen=True)
class Running:
    """A generation under way and what its answer is made of."""

    call: ModelCall[Any]
    generation: Generation
    id: str
    created: int
    n: int
    prompt_tokens: int
    request_body: dict[str, Any]  # as stored with the answer
    sources: list[dict[str, Any]] | None  # chat models with a knowledge base: the passages in the prompt

    @property
    def chat(self) -> bool:
        return isinstance(self.call.body, ChatCompletionRequest)

    @property
    def object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"


async def generate(
    state: ServerState, request: Request, call: ModelCall[ChatCompletionRequest] | ModelCall[CompletionRequest]
) -> Response:
    """Check the limits, start generating, and answer whole or as a stream."""
    params, n = sampling(state.settings, call.body)
    tokenizer = await run_in_threadpool(state.backend.tokenizer, call.target)  # loads the base model on first use
    messages, hits = await grounded(state, call)
    ids, request_body = prompt(tokenizer, call, messages)
    check_prompt(state.settings, ids)
    if state.settings.log_prompts:
        prompt_log.info("%s %s", call.body.model, json.dumps(request_body, ensure_ascii=False))
    request_body.update(params.__dict__, n=n)
    generation = start(state, call.target, ids, params, n)
    chat = isinstance(call.body, ChatCompletionRequest)
    completion_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    found = sources(hits) if call.target.grounding is not None else None
    run = Running(call, generation, completion_id, int(time.time()), n, len(ids), request_body, found)
    return streamed(state, run) if call.body.stream else await answered(state, request, run)


async def grounded(
    state: ServerState, call: ModelCall[ChatCompletionRequest] | ModelCall[CompletionRequest]
) -> tuple[list[dict[str, str]], list[Hit]]:
    """A chat request's messages, with the passages its model's knowledge base returns for the last question."""
    req = call.body
    if not isinstance(req, ChatCompletionRequest):
        return [], []
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    grounding = call.target.grounding
    question = last_question(messages)
    if grounding is None or not question.strip():
        return messages, []
    hits = await search(state, grounding.knowledge, question, grounding.top_k, key_filter(call.key))
    return with_passages(messages, [hit.chunk for hit in hits], grounding.passage_chars), hits


def prompt(
    tokenizer: Any, call: ModelCall[ChatCompletionRequest] | ModelCall[CompletionRequest], messages: list[dict[str, str]]
) -> tuple[list[int], dict[str, Any]]:
    """The prompt's token ids and the request as stored: chat messages as training renders them, or raw text."""
    req = call.body
    if isinstance(req, ChatCompletionRequest):
        ids, messages = chat_prompt(tokenizer, messages, call.target.system_prompt)
        return ids, {"messages": messages}
    return tokenizer(req.prompt)["input_ids"], {"prompt": req.prompt}


def start(state: ServerState, target: Target, ids: list[int], params: SamplingParams, n: int) -> Generation:
    """Hand the prompt to the backend; 429 with Retry-After when its queue is full."""
    try:
        return state.backend.start(target, ids, params, n, time.monotonic() + state.settings.request_timeout_s)
    except Overloaded as exc:
        raise ApiError(
            429, f"server busy: {exc}; retry later", "rate_limit_error", "overloaded", {"Retry-After": str(exc.retry_after)}
        ) from None


def observe(metrics: ServeMetrics, generation: Generation, started: float, tokens: int) -> None:
    """Time to first token, tokens per second and tokens generated."""
    if generation.first_token_at is not None:
        metrics.ttft.observe(generation.first_token_at - started)
        spent = time.monotonic() - generation.first_token_at
        if tokens > 1 and spent > 0:
            metrics.tokens_per_s.observe((tokens - 1) / spent)
    metrics.generated.inc(tokens)


async def record(state: ServerState, run: Running, texts: list[str], finish: str | None, tokens: int) -> None:
    await record_answer(
        state,
        run.call,
        run.id,
        run.object,
        request=run.request_body,
        response={"choices": texts} if run.sources is None else {"choices": texts, "sources": run.sources},
        finish=finish,
        prompt_tokens=run.prompt_tokens,
        completion_tokens=tokens,
    )


def streamed(state: ServerState, run: Running) -> StreamingResponse:
    """Server-sent events; the answer is stored and measured when the stream ends."""
    req = run.call.body
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    stream = sse(
        run.generation,
        run.chat,
        run.id,
        run.created,
        req.model,
        run.n,
        include_usage,
        run.prompt_tokens,
        partial(record, state, run),
        partial(observe, state.metrics, run.generation, run.call.started),
        {} if run.sources is None else {SOURCES_FIELD: run.sources},
    )
    return StreamingResponse(
        stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def answered(state: ServerState, request: Request, run: Running) -> JSONResponse:
    """The whole answer once every choice has finished (504/503/500 if generation ended abnormally)."""
    texts, finishes, tokens = await collect(run.generation, request, run.n)
    observe(state.metrics, run.generation, run.call.started, sum(tokens))
    raise_for_abnormal(finishes)
    choices = [
        (
            {"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None, "finish_reason": f}
            if run.chat
            else {"index": i, "text": t, "logprobs": None, "finish_reason": f}
        )
        for i, (t, f) in enumerate(zip(texts, finishes, strict=True))
    ]
    usage = {
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": sum(tokens),
        "total_tokens": run.prompt_tokens + sum(tokens),
    }
    await record(state, run, texts, finishes[0], sum(tokens))
    body = {
        "id": run.id,
        "object": run.object,
        "created": run.created,
        "model": run.call.body.model,
        "system_fingerprint": run.call.target.served,
        "choices": choices,
        "usage": usage,
    }
    return JSONResponse(body if run.sources is None else body | {SOURCES_FIELD: run.sources})
