"""Feedback review: the review queue of `tuneloom.feedback` (queue new feedback, accept, edit, reject, bulk
accept with a filter), with the leakage and duplicate flags and the accounting. Reviewers and admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.errors import TuneloomError
from tuneloom.feedback import QueueFilter, accept, accounting, edit, list_queue, propose, reject
from tuneloom.ui.deps import Console, ConsoleDep, Forbidden, Refused, ReviewerPost, Viewer, render, see_other
from tuneloom.ui.sessions import Session

router = APIRouter()
STATES = ("pending", "accepted", "edited", "rejected")
SHOWN = 200


def _task(app: Console, name: str) -> str:
    names = app.project.config.task_names()
    if name and name not in names:
        raise Forbidden(f"no task {name!r} in the project")
    return name or names[0]


def reviewer_name(session: Session) -> str:
    """How the queue records who decided: the key's label and id (never the key)."""
    return f"{session.key_name or 'console'} (key {session.key_id})"


def _filter(state: str, flagged: str, version: str = "") -> QueueFilter:
    if state and state not in STATES:
        raise Forbidden(f"state must be one of {', '.join(STATES)}")
    return QueueFilter(
        states=[state] if state else None,  # checked against STATES just above
        flagged={"yes": True, "no": False}.get(flagged),
        model_version=version or None,
    )


@router.get("/feedback", response_class=HTMLResponse)
def feedback_page(
    request: Request, app: ConsoleDep, session: Viewer, task: str = "", state: str = "pending", flagged: str = ""
) -> HTMLResponse:
    name = _task(app, task)
    try:
        items = list_queue(app.project, name, _filter(state, flagged))
        account, problem = accounting(app.project, name), None
    except TuneloomError as exc:
        items, account, problem = [], None, str(exc)
    return render(
        request,
        "feedback.html",
        task=name,
        tasks=app.project.config.task_names(),
        items=items[:SHOWN],
        n_items=len(items),
        account=account,
        problem=problem,
        state=state,
        flagged=flagged,
        states=STATES,
    )


def _back(task: str, state: str, flagged: str) -> str:
    return f"/feedback?task={task}&state={state}&flagged={flagged}"


async def _act(app: Console, work: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(work, app.project, *args)
    except TuneloomError as exc:
        raise Refused(str(exc)) from None


@router.post("/feedback/propose")
async def queue_new(request: Request, app: ConsoleDep, session: ReviewerPost, task: str = Form("")) -> Response:
    """New feedback -> review queue (idempotent; the project's auto-accept rules apply)."""
    name = _task(app, task)
    await _act(app, propose, name)
    return see_other(request, _back(name, "pending", ""))


@router.post("/feedback/{item_id}/decide")
async def decide(
    request: Request,
    item_id: int,
    app: ConsoleDep,
    session: ReviewerPost,
    task: str = Form(""),
    action: str = Form(...),
    correction: str = Form(""),
    note: str = Form(""),
    state: str = Form("pending"),
    flagged: str = Form(""),
) -> Response:
    """Accept, reject, or edit (a corrected answer or label) one queue item."""
    name, who = _task(app, task), reviewer_name(session)
    if action == "edit":
        if not correction.strip():
            raise Refused("an edit needs the corrected answer (or label)")
        await _act(app, edit, name, item_id, correction.strip(), who, note or None)
    elif action in ("accept", "reject"):
        work = accept if action == "accept" else reject
        await _act(app, work, name, QueueFilter(ids=[item_id]), who, note or None)
    else:
        raise Forbidden("action must be accept, edit or reject")
    return see_other(request, _back(name, state, flagged))


@router.post("/feedback/bulk-accept")
async def bulk_accept(
    request: Request,
    app: ConsoleDep,
    session: ReviewerPost,
    task: str = Form(""),
    version: str = Form(""),
    include_flagged: str = Form(""),
) -> Response:
    """Accept every pending item that has training rows (and, unless asked, no leak/duplicate flag)."""
    name = _task(app, task)
    flt = QueueFilter(
        states=["pending"], with_rows=True, flagged=None if include_flagged else False, model_version=version or None
    )
    await _act(app, accept, name, flt, reviewer_name(session), "bulk accept in the console")
    return see_other(request, _back(name, "pending", ""))
