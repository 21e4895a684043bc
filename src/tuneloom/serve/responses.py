"""Turning generation events into OpenAI answers: the prompt, whole answers, SSE chunks, and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from tuneloom.serve.backends import Generation
from tuneloom.serve.engine import Event


class ApiError(Exception):
    """An answer in OpenAI's error format."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def chat_prompt(
    tokenizer: Any, messages: list[dict[str, str]], system_prompt: str | None
) -> tuple[list[int], list[dict[str, str]]]:
    """Prompt token ids as training renders them (train/sft.py): the model's chat template with the
    generation prompt, and the task's system prompt first when the conversation has none."""
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    return list(ids), messages


def raise_for_abnormal(finishes: list[str | None]) -> None:
    if "timeout" in finishes:
        raise ApiError(504, "the request took longer than serve.request_timeout_s", "server_error", "timeout")
    if "shutdown" in finishes:
        raise ApiError(503, "the server shut down before answering", "server_error", "unavailable", {"Retry-After": "5"})
    if "error" in finishes:
        raise ApiError(500, "generation failed (see the server log)", "server_error", "generation_failed")


async def collect(generation: Generation, request: Request, n: int) -> tuple[list[str], list[str | None], list[int]]:
    """Every choice's text, finish reason and token count; cancels generation if the client goes away."""
    texts, tokens = [""] * n, [0] * n
    finishes: list[str | None] = [None] * n

    async def watch() -> None:
        while True:
            if await request.is_disconnected():
                generation.cancel()
                return
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        async for event in generation.events():
            texts[event.index] += event.text
            tokens[event.index] = event.completion_tokens
            if event.finish_reason is not None:
                finishes[event.index] = event.finish_reason
    finally:
        watcher.cancel()
        generation.cancel()
    return texts, finishes, tokens


def _chunk(
    chat: bool,
    completion_id: str,
    created: int,
    model: str,
    event: Event | None,
    index: int = 0,
    extra: dict[str, Any] | None = None,
) -> str:
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if event is None else {"content": event.text}
        choice: dict[str, Any] = {
            "index": index if event is None else event.index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": None if event is None else event.finish_reason,
        }
        obj = "chat.completion.chunk"
    else:
        assert event is not None
        choice = {"index": event.index, "text": event.text, "logprobs": None, "finish_reason": event.finish_reason}
        obj = "text_completion"
    body = {"id": completion_id, "object": obj, "created": created, "model": model, "choices": [choice], **(extra or {})}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def sse(
    generation: Generation,
    chat: bool,
    completion_id: str,
    created: int,
    model: str,
    n: int,
    include_usage: bool,
    prompt_tokens: int,
    record: Any,
    observe: Any,
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    """OpenAI's streaming format; the completion is stored before `[DONE]`; a disconnect cancels generation.

    `extra` (e.g. the sources of a grounded answer) rides on the first chunk."""
    texts, tokens = [""] * n, [0] * n
    finishes: list[str | None] = [None] * n
    try:
        if chat:
            for i in range(n):
                yield _chunk(chat, completion_id, created, model, None, i, extra if i == 0 else None)
        async for event in generation.events():
            texts[event.index] += event.text
            tokens[event.index] = event.completion_tokens
            finishes[event.index] = event.finish_reason
            if event.finish_reason in ("timeout", "shutdown", "error", "cancelled"):
                error = {
                    "message": f"generation ended: {event.finish_reason}",
                    "type": "server_error",
                    "code": event.finish_reason,
                }
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            if event.text or event.finish_reason:
                yield _chunk(chat, completion_id, created, model, event)
        observe(sum(tokens))
        await record(texts, finishes[0], sum(tokens))
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": sum(tokens),
                "total_tokens": prompt_tokens + sum(tokens),
            }
            obj = "chat.completion.chunk" if chat else "text_completion"
            body: dict[str, Any] = {
                "id": completion_id,
                "object": obj,
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        generation.cancel()
