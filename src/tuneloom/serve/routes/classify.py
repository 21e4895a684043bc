"""POST /v1/classify: each input text's label and the score of every label, from a classification model."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.serve.dependencies import ClassifyCall, State
from tuneloom.serve.limits import check_inputs
from tuneloom.serve.recording import record_answer

router = APIRouter()


@router.post("/v1/classify")
async def classify(call: ClassifyCall, state: State) -> Response:
    texts = call.body.texts()
    check_inputs(state.settings, texts)
    scores, tokens = await run_in_threadpool(state.backend.classify, call.target, texts, state.settings.limits.max_prompt_tokens)
    data = []
    for i, row in enumerate(scores):
        label = max(row, key=row.__getitem__)
        data.append({"index": i, "label": label, "score": row[label], "scores": row})
    completion_id = f"clf-{uuid.uuid4().hex}"
    await record_answer(
        state,
        call,
        completion_id,
        "classification",
        request={"input": texts},
        response={"labels": [d["label"] for d in data]},
        finish=None,
        prompt_tokens=tokens,
        completion_tokens=0,
    )
    return JSONResponse(
        {
            "id": completion_id,
            "object": "classification",
            "created": int(time.time()),
            "model": call.body.model,
            "system_fingerprint": call.target.served,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
