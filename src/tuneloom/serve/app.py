"""The FastAPI application: state, middleware and routers put together; `serve` runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from tuneloom.config import Project, ServeConfig
from tuneloom.serve.error_handlers import add_error_handlers
from tuneloom.serve.middleware import BodyLimit, access_log, log_and_measure
from tuneloom.serve.routes import ROUTERS
from tuneloom.serve.state import ServerState, build_state, load_dependencies


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Ready once its dependencies are loaded; on shutdown stop accepting, let running requests finish, then close."""
    state: ServerState = app.state.tuneloom
    await run_in_threadpool(load_dependencies, state)
    if state.settings.auth and not [k for k in state.keys.list() if k.revoked is None]:
        access_log.warning("no API keys yet: every /v1 request is refused until `tuneloom keys create`")
    state.ready = True
    yield
    state.ready, state.draining = False, True
    await run_in_threadpool(state.backend.close, state.settings.shutdown_grace_s)
    state.knowledge.close()
    state.feedback.close()


def create_app(project: Project, settings: ServeConfig | None = None) -> FastAPI:
    """The server for a project; `settings` defaults to the project file's `serve:` section."""
    return app_for(build_state(project, settings or project.config.serve))


def app_for(state: ServerState) -> FastAPI:
    """The application around a server state: middleware, error handlers and every router."""
    settings = state.settings
    app = FastAPI(title="Tuneloom", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tuneloom = state
    if settings.cors_origins:  # off unless configured
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.limits.max_body_bytes)
    app.middleware("http")(log_and_measure)  # added last: runs first, so it counts and logs every answer
    add_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.console:
        from tuneloom.ui import mount_console

        mount_console(app, state.project, serve_state=state)
    return app


def serve(project: Project, host: str | None = None, port: int | None = None) -> None:
    """Run the server until interrupted (SIGINT/SIGTERM: stop accepting, finish running requests, exit)."""
    import uvicorn

    settings = project.config.serve
    app = create_app(project, settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
