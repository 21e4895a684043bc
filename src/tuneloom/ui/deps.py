"""What every console route shares: the console state, the logged-in session, CSRF checks and rendering."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.ui.jobs import JobRunner
from tuneloom.ui.sessions import COOKIE, Session, SessionStore, csrf_ok

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


class LoginRequired(Exception):
    """No session (go to the login page), or an unknown, expired or revoked one (say so first)."""

    def __init__(self, reason: str) -> None:
        super().__init__("login required")
        self.reason = reason  # missing | unknown | expired | revoked (SessionStore.check)


class Refused(TuneloomError):
    """An action the Python API refused (registry, review queue); shown with its message (409)."""


class Forbidden(Exception):
    """The session's role may not do this (reviewers cannot launch jobs or promote), or the CSRF token is wrong."""


@dataclass
class Console:
    """Kept on `app.state.console`."""

    project: Project
    sessions: SessionStore
    jobs: JobRunner
    templates: Jinja2Templates
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serve_state: Any = None
    _registry: Any = None
    owns_serve_state: bool = True

    @property
    def workspace(self) -> Path:
        return self.project.workspace

    def registry(self) -> Any:
        """The project's model registry (built once; MLflow is imported on first use)."""
        with self.lock:
            if self._registry is None:
                from tuneloom.registry.lookup import registry_for

                self._registry = registry_for(self.project)
            return self._registry

    def has_registry(self) -> bool:
        return self.project.config.registry.uri is not None or (self.workspace / "mlflow.db").is_file()

    def serve_state(self) -> Any:
        """The serving stack (backend, feedback store, redaction) the playground answers with, built once."""
        with self.lock:
            if self._serve_state is None:
                from tuneloom.serve.state import build_state

                self._serve_state = build_state(self.project, self.project.config.serve)
                self.owns_serve_state = True
            return self._serve_state

    def close(self) -> None:
        """Close the session table, and the playground's serving stack (only when the console built it: `tuneloom ui`)."""
        self.sessions.close()
        if self._serve_state is not None and self.owns_serve_state:
            self._serve_state.backend.close(1.0)
            self._serve_state.feedback.close()


def console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(console)]


def current(request: Request) -> Session:
    """The request's session; LoginRequired saying why there is none."""
    session, reason = console(request).sessions.check(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired(reason)
    request.state.session = session
    return session


async def _check_csrf(request: Request, session: Session) -> None:
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        form = await request.form()
        value = form.get("csrf")
        presented = value if isinstance(value, str) else None
    if not csrf_ok(session.csrf, presented):
        raise Forbidden("the form's security token is missing or stale: reload the page and try again")


def viewer(request: Request) -> Session:
    """Any logged-in user (admin or reviewer): read pages."""
    return current(request)


async def reviewer_post(request: Request) -> Session:
    """A state-changing request any logged-in user may make (playground, feedback review), with its CSRF token."""
    session = current(request)
    await _check_csrf(request, session)
    return session


async def admin_post(request: Request) -> Session:
    """A state-changing request only an admin may make (jobs, register, promote, rollback), with its CSRF token."""
    session = current(request)
    if not session.is_admin:
        raise Forbidden("this needs an admin key: reviewers can review feedback and use the playground")
    await _check_csrf(request, session)
    return session


Viewer = Annotated[Session, Depends(viewer)]
ReviewerPost = Annotated[Session, Depends(reviewer_post)]
AdminPost = Annotated[Session, Depends(admin_post)]


def url(request: Request, path: str) -> str:
    """A console path under wherever the console is mounted (`/` alone, `/console` inside `tuneloom serve`)."""
    return request.scope.get("root_path", "").rstrip("/") + path


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page with the session, its CSRF token and the mount prefix available to the template."""
    app = console(request)
    session = getattr(request.state, "session", None)
    if session is None and request.cookies.get(COOKIE):
        session = app.sessions.get(request.cookies.get(COOKIE))
    return app.templates.TemplateResponse(
        request,
        template,
        {"session": session, "project": app.project, "root": url(request, ""), "u": lambda p: url(request, p), **context},
        status_code=status,
    )


def see_other(request: Request, path: str) -> RedirectResponse:
    """Post/redirect/get: a refresh never repeats the form."""
    return RedirectResponse(url(request, path), status_code=303)
