"""POST /v1/feedback: a rating (and optionally a correction) of a stored answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.serve.dependencies import ApiKey, State
from tuneloom.serve.responses import ApiError
from tuneloom.serve.schemas import FeedbackRequest

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(req: FeedbackRequest, key: ApiKey, state: State) -> Response:
    """404 for an unknown completion id; 403 when the key may not use the model that answered."""
    row = await run_in_threadpool(state.feedback.completion, req.completion_id)
    if row is None:
        raise ApiError(404, f"no completion with id '{req.completion_id}'", code="completion_not_found")
    if key is not None and not key.allows(row.served.rpartition(":")[0] or row.served):
        raise ApiError(403, "this API key may not rate answers of that model", "permission_error", "model_not_allowed")
    feedback_id = await run_in_threadpool(
        state.feedback.record_feedback, req.completion_id, req.rating, req.correction, req.tags, key.id if key else None
    )
    return JSONResponse({"id": feedback_id, "object": "feedback", "completion_id": req.completion_id, "stored": True})
