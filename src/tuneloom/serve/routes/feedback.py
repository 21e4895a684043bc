"""POST /v1/feedback: a rating (and optionally a correction) of a stored answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from tuneloom.data.redact import redact_json
from tuneloom.serve.dependencies import ApiKey, State
from tuneloom.serve.responses import ApiError
from tuneloom.serve.schemas import FeedbackRequest
from tuneloom.serve.state import ServerState

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(req: FeedbackRequest, key: ApiKey, state: State) -> Response:
    """404 for an unknown completion id; 403 when the key may not use the model that answered; 503 when the
    feedback database is locked or unreachable. The same feedback sent twice is stored once (`duplicate`)."""
    try:
        row = await run_in_threadpool(state.feedback.completion, req.completion_id)
        if row is None:
            raise ApiError(404, f"no completion with id '{req.completion_id}'", code="completion_not_found")
        if key is not None and not key.allows(row.served.rpartition(":")[0] or row.served):
            raise ApiError(403, "this API key may not rate answers of that model", "permission_error", "model_not_allowed")
        correction = _redacted(state, req.correction)
        found = await run_in_threadpool(
            state.feedback.record_feedback_once, req.completion_id, req.rating, correction, req.tags, key.id if key else None
        )
    except OperationalError:
        raise ApiError(
            503,
            "the feedback database is busy or unreachable; nothing was stored, retry shortly",
            "server_error",
            "feedback_unavailable",
            {"Retry-After": "5"},
        ) from None
    if found is None:  # the answer disappeared between the two reads (its row was deleted)
        raise ApiError(404, f"no completion with id '{req.completion_id}'", code="completion_not_found")
    feedback_id, stored = found
    body = {"id": feedback_id, "object": "feedback", "completion_id": req.completion_id, "stored": True, "duplicate": not stored}
    return JSONResponse(body)


def _redacted(state: ServerState, correction: str | None) -> str | None:
    """A correction is stored as redacted as the answer it corrects (serve.redact)."""
    if correction is None or state.redactor is None or not state.settings.store_prompts:
        return correction
    return str(redact_json([correction], state.redactor)[0])
