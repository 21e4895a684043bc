"""Playground: base, tuned and production answer the same prompt side by side; each answer can be rated or
corrected, which lands in the feedback store (`tuneloom.serve.feedback`) with the answer's completion id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloom.errors import TuneloomError
from tuneloom.ui.deps import Console, ConsoleDep, Forbidden, Refused, ReviewerPost, Viewer, render, see_other
from tuneloom.ui.playground import MAX_PROMPT_CHARS, SIDES, Answer, Retrieved, answer, retrieve, targets

router = APIRouter()


def _task(app: Console, name: str) -> Any:
    names = app.project.config.task_names()
    if name and name not in names:
        raise Forbidden(f"no task {name!r} in the project")
    return app.project.config.task(name or names[0])


def _stored(app: Console, ids: list[str]) -> tuple[str, list[Answer]]:
    """The prompt and answers of stored console completions (the durable URL of a playground result)."""
    state = app.serve_state()
    prompt, answers = "", []
    for cid in ids[: len(SIDES)]:
        row = state.feedback.completion(cid)
        if row is None or row.endpoint != "console":
            continue
        request, response = row.request or {}, row.response or {}
        messages = request.get("messages") or []
        prompt = request.get("input") or (messages[-1]["content"] if messages else prompt)
        text = (response.get("choices") or [""])[0] if response else "(not stored: serve.store_prompts is off)"
        answers.append(Answer(row.model, row.served, text, cid))
    return prompt, answers


@router.get("/playground", response_class=HTMLResponse)
def playground_page(
    request: Request,
    app: ConsoleDep,
    session: Viewer,
    task: str = "",
    answer_id: list[str] = Query(default=[], alias="answer"),
    rated: str = "",
) -> HTMLResponse:
    chosen = _task(app, task)
    prompt, answers = _stored(app, answer_id) if answer_id else ("", [])
    return _page(request, app, chosen, prompt, answers, rated)


def _page(
    request: Request, app: Console, task: Any, prompt: str, answers: list[Answer], rated: str, retrieved: Retrieved | None = None
) -> HTMLResponse:
    """The playground with each side's model (or why it cannot answer) and the answers shown."""
    sides = targets(app.project, task, app.serve_state().resolver)
    available = {side: t if isinstance(t, str) else None for side, t in sides.items()}
    served = {side: "" if isinstance(t, str) else t.served for side, t in sides.items()}
    return render(
        request,
        "playground.html",
        task=task,
        tasks=app.project.config.task_names(),
        prompt=prompt,
        answers=answers,
        rated=rated,
        unavailable=available,
        served=served,
        max_chars=MAX_PROMPT_CHARS,
        retrieved=retrieved,
        back=str(request.url.path[len(request.scope.get("root_path", "")) :])
        + ("?" + request.url.query if request.url.query else ""),
    )


@router.post("/playground")
async def ask(
    request: Request, app: ConsoleDep, session: ReviewerPost, task: str = Form(""), prompt: str = Form(...)
) -> Response:
    """Every available side answers; the page then shows them from the store (a refresh asks nothing again)."""
    chosen = _task(app, task)
    prompt = prompt.strip()
    if not prompt or len(prompt) > MAX_PROMPT_CHARS:
        raise Forbidden(f"the prompt must hold 1 to {MAX_PROMPT_CHARS} characters")
    state = await run_in_threadpool(app.serve_state)
    sides = await run_in_threadpool(targets, app.project, chosen, state.resolver)
    try:
        retrieved = await run_in_threadpool(retrieve, app.project, chosen, prompt, session.allowed_tags)
    except TuneloomError as exc:
        raise Refused(f"the knowledge base could not be searched: {exc}") from None
    messages = retrieved.messages if retrieved else None
    answers = []
    for side in SIDES:
        target = sides[side]
        if isinstance(target, str):
            answers.append(Answer(side, "", "", None, error=target))
        else:
            answers.append(await answer(state, target, prompt, side, session.key_id, messages))
    if retrieved is not None or not state.settings.store_prompts:  # sources, or nothing stored: show them now
        return await run_in_threadpool(_page, request, app, chosen, prompt, answers, "", retrieved)
    query = "".join(f"&answer={a.completion_id}" for a in answers if a.completion_id)
    return see_other(request, f"/playground?task={chosen.name}{query}")


@router.post("/playground/feedback")
def rate(
    request: Request,
    app: ConsoleDep,
    session: ReviewerPost,
    completion_id: str = Form(...),
    rating: str = Form(...),
    correction: str = Form(""),
    back: str = Form("/playground"),
) -> Response:
    """Thumbs up/down and an optional corrected answer for one completion."""
    if rating not in ("up", "down"):
        raise Forbidden("rating must be up or down")
    state = app.serve_state()
    row = state.feedback.record_feedback(completion_id, rating, correction.strip() or None, ["console"], session.key_id)
    if row is None:
        raise Forbidden(f"no answer {completion_id!r} in the feedback store")
    target = back if back.startswith("/playground") else "/playground"
    return see_other(request, f"{target}&rated={completion_id}" if "?" in target else f"{target}?rated={completion_id}")
