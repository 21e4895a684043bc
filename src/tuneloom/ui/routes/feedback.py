"""Feedback review: the review queue of `tuneloom.feedback` (accept, edit, reject, bulk accept), when that
package is installed; until then the page says so and shows the ratings the store already holds."""

from __future__ import annotations

import importlib.util

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tuneloom.ui.deps import ConsoleDep, Viewer, render

router = APIRouter()


def review_queue_available() -> bool:
    """Whether this Tuneloom has the review queue (the `tuneloom.feedback` package)."""
    return importlib.util.find_spec("tuneloom.feedback") is not None


@router.get("/feedback", response_class=HTMLResponse)
def feedback_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    return render(request, "feedback.html", available=review_queue_available())
