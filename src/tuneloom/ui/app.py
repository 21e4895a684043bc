"""The console application: `create_console` builds it, `mount_console` puts it inside `tuneloom serve`,
`run_console` serves it alone (`tuneloom ui`)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tuneloom.artifacts import ArtifactError
from tuneloom.config import Project
from tuneloom.serve.auth import KeyStore, keys_path
from tuneloom.ui.deps import STATIC, TEMPLATES, Console, Forbidden, LoginRequired, Refused, render, url
from tuneloom.ui.jobs import JobError, JobRunner
from tuneloom.ui.routes import ROUTERS
from tuneloom.ui.sessions import COOKIE, LOGIN_COOKIE, SessionStore, csrf_ok, sessions_path
from tuneloom.ui.views import NotFound

log = logging.getLogger("tuneloom.ui")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.console.close()


def create_console(project: Project, idle_s: float | None = None) -> FastAPI:
    """The console for one project (sessions, jobs and results live in the workspace, so a restart loses none)."""
    keys = KeyStore(keys_path(project.workspace))
    path = sessions_path(project.workspace)
    sessions = SessionStore(keys, path) if idle_s is None else SessionStore(keys, path, idle_s)
    templates = Jinja2Templates(directory=str(TEMPLATES))  # autoescapes .html
    templates.env.filters["dictsum"] = lambda counts: sum(counts.values())
    app = FastAPI(title="Tuneloom console", lifespan=_lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = Console(project, sessions, JobRunner(project.workspace), templates)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.middleware("http")(_security_headers)
    _add_login(app)
    _add_error_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


async def _security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.headers.get("content-type", "").startswith("text/html"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _add_login(app: FastAPI) -> None:
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/", expired: int = 0) -> Response:
        token = secrets.token_urlsafe(32)
        page = render(request, "login.html", login_csrf=token, next=_local_path(next), expired=bool(expired), error=None)
        page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=url(request, "/") or "/")
        return page

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, key: str = Form(""), csrf: str = Form(""), next: str = Form("/")) -> Response:
        if not csrf_ok(request.cookies.get(LOGIN_COOKIE, ""), csrf):
            return _login_again(request, "The login form expired: please try again.", next)
        session = request.app.state.console.sessions.login(key)
        if session is None:  # never log the key itself
            log.warning("console login refused (unknown, revoked or unscoped key)")
            return _login_again(request, "That key is unknown, revoked, or has neither the admin nor the reviewer scope.", next)
        log.info("console login: key %s (%s)", session.key_id, session.role)
        response = RedirectResponse(url(request, _local_path(next)), status_code=303)
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path=url(request, "/") or "/")
        response.delete_cookie(LOGIN_COOKIE, path=url(request, "/") or "/")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        sessions: SessionStore = request.app.state.console.sessions
        session = sessions.get(request.cookies.get(COOKIE))
        if session is not None:
            if not csrf_ok(session.csrf, csrf):
                raise Forbidden("the form's security token is missing or stale: reload the page and try again")
            sessions.logout(session.id)
        response = RedirectResponse(url(request, "/login"), status_code=303)
        response.delete_cookie(COOKIE, path=url(request, "/") or "/")
        return response


def _login_again(request: Request, error: str, next: str) -> Response:
    token = secrets.token_urlsafe(32)
    page = render(request, "login.html", 401, login_csrf=token, next=_local_path(next), expired=False, error=error)
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", path=url(request, "/") or "/")
    return page


def _local_path(path: str) -> str:
    """Only a path inside the console may follow a login (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method == "GET" and exc.reason == "missing":
            target = request.url.path[len(request.scope.get("root_path", "")) :] or "/"
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(url(request, "/login") + "?next=" + _quote(target + query), status_code=303)
        response = render(request, "expired.html", 401, reason=exc.reason)
        response.delete_cookie(COOKIE, path=url(request, "/") or "/")
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "error.html", 403, title="Not allowed", message=str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", 404, title="Not found", message=f"Nothing here by that name: {exc}")

    async def refused(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", 409, title="Not done", message=str(exc))

    async def unreadable(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", 500, title="A workspace file cannot be read", message=str(exc))

    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(JobError, not_found)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(ArtifactError, unreadable)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def mount_console(app: FastAPI, project: Project, path: str = "/console", serve_state: Any = None) -> None:
    """Serve the console inside another FastAPI app (`tuneloom serve` with `serve.console: true`); given the
    server's state, the playground answers with the server's models instead of loading its own."""
    console_app = create_console(project)
    if serve_state is not None:
        console_app.state.console._serve_state = serve_state
        console_app.state.console.owns_serve_state = False
        # The server's middleware reads `request.app.state.tuneloom` after the mounted app has set
        # scope["app"] to itself, so the console carries the server's state under that name too.
        console_app.state.tuneloom = serve_state
    app.mount(path, console_app)


def run_console(project: Project, host: str = "127.0.0.1", port: int = 8300) -> None:
    """Serve the console until interrupted; jobs it started keep running after it stops."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_console(project), host=host, port=port, access_log=False, log_level="info")
