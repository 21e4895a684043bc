"""Storing each answer in the feedback database (redacted when configured) so clients can rate it later."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from tuneloom.data.redact import redact_json
from tuneloom.serve.dependencies import ModelCall
from tuneloom.serve.state import ServerState


async def record_answer(
    state: ServerState,
    call: ModelCall[Any],
    completion_id: str,
    endpoint: str,
    *,
    request: Any,
    response: Any,
    finish: str | None,
    prompt_tokens: int,
    completion_tokens: int,
) -> None:
    """One completions row, committed before the answer is sent; bodies only when `serve.store_prompts` is on."""
    settings = state.settings
    if state.redactor is not None and settings.store_prompts:
        request, response = redact_json([request, response], state.redactor)
    await run_in_threadpool(
        state.feedback.record_completion,
        id=completion_id,
        endpoint=endpoint,
        model=call.body.model,
        served=call.target.served,
        key_id=call.key.id if call.key else None,
        request=request if settings.store_prompts else None,
        response=response if settings.store_prompts else None,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=int((time.monotonic() - call.started) * 1000),
    )
