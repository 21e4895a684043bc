"""Registry: versions with lineage, register a run, promote (a reason is required when the gate did not pass),
roll back, and the history of `production`. Reading and writing go through `tuneloom.registry`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from tuneloom.ui.deps import AdminPost, Console, ConsoleDep, Refused, Viewer, render, see_other
from tuneloom.ui.views import NotFound, run_view

router = APIRouter()


class RegistryRefused(Refused):
    """A register, promote or rollback the registry refused."""


def model_names(app: Console) -> list[str]:
    """The registered-model name of each task (task.registry_name, else the task name)."""
    return list(dict.fromkeys(t.registry_name or t.name for t in app.project.config.tasks))


def _versions(app: Console, name: str) -> tuple[list[Any], list[Any]]:
    """(versions, history) of a model; both empty when nothing is registered under that name yet."""
    from tuneloom.registry import NotRegistered

    if not app.has_registry():
        return [], []
    registry = app.registry()
    try:
        return registry.list_versions(name), registry.history(name)
    except NotRegistered:
        return [], []


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    models = {name: _versions(app, name)[0] for name in model_names(app)}
    return render(request, "registry.html", models=models)


@router.get("/registry/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, app: ConsoleDep, session: Viewer) -> HTMLResponse:
    if name not in model_names(app):
        raise NotFound(name)
    versions, history = _versions(app, name)
    production = next((v.version for v in versions if v.is_production), None)
    return render(request, "model.html", name=name, versions=versions, history=history, production=production)


@router.post("/runs/{run}/register")
def register(request: Request, run: str, app: ConsoleDep, session: AdminPost) -> Response:
    from tuneloom.registry import RegistryError

    view = run_view(app.workspace, run)
    if view.snapshot is None:
        raise RegistryRefused(f"run {run} has no config.yaml: it cannot be registered")
    task = view.snapshot.task_config()
    name = task.registry_name or task.name
    try:
        app.registry().register_run(view.path, name)
    except RegistryError as exc:
        raise RegistryRefused(str(exc)) from None
    return see_other(request, f"/registry/{name}")


@router.post("/registry/{name}/promote")
def promote(
    request: Request, name: str, app: ConsoleDep, session: AdminPost, version: int = Form(...), reason: str = Form("")
) -> Response:
    """Promote; a version whose gate did not pass needs a reason and is recorded as forced."""
    from tuneloom.registry import RegistryError

    if name not in model_names(app):
        raise NotFound(name)
    try:
        info = app.registry().get(f"{name}:{version}")
        force = info.gate != "passed"
        if force and not reason.strip():
            raise RegistryRefused(
                f"{name} version {version} did not pass its gate ({info.gate or 'no gate result'}): "
                "write why it must ship anyway in the reason field"
            )
        app.registry().promote(name, version, force=force, reason=reason or None)
    except RegistryError as exc:
        raise RegistryRefused(str(exc)) from None
    return see_other(request, f"/registry/{name}")


@router.post("/registry/{name}/rollback")
def rollback(request: Request, name: str, app: ConsoleDep, session: AdminPost, reason: str = Form("")) -> Response:
    from tuneloom.registry import RegistryError

    if name not in model_names(app):
        raise NotFound(name)
    try:
        app.registry().rollback(name, reason or None)
    except RegistryError as exc:
        raise RegistryRefused(str(exc)) from None
    return see_other(request, f"/registry/{name}")
