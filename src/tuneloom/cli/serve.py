"""`tuneloom serve` and `tuneloom keys create | revoke | list`: the OpenAI-compatible server and its API keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, config_option, err, load, out, user_errors
from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.config import Project
    from tuneloom.serve.auth import KeyStore

ServeConfigOpt = Annotated[Path, config_option("Project file or its folder (its workspace holds keys and feedback).")]
BACKENDS = ("auto", "transformers", "vllm", "llamacpp")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    config: ServeConfigOpt = DEFAULT_CONFIG,
    host: Annotated[str | None, typer.Option(help="Address (default serve.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serve.port, 8000).")] = None,
    backend: Annotated[str | None, typer.Option(help="auto | transformers | vllm | llamacpp (default serve.backend).")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (loopback only).")] = False,
) -> None:
    """Serve the registry's models (and the project's base models) with the OpenAI API.

    Example: tuneloom serve -c tuneloom.yaml --port 8000
    """
    # Before torch loads OpenMP: idle threads sleep instead of spinning. Spinning threads of a server that shares
    # its CPU with other jobs fight them and decoding collapses (measured: 0.7 against 5.9 tokens/s); set the
    # variable yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tuneloom.serve.app import serve as run_server
    from tuneloom.serve.backends import select_backend

    with user_errors(ValueError):
        project = with_serve_options(load(config), host, backend, no_auth)
        settings = project.config.serve
        chosen = select_backend(settings.backend, vllm_python=settings.vllm_python)
    err.print(
        f"serving {project.path.parent.name} on http://{host or settings.host}:"
        f"{port if port is not None else settings.port}/v1 with the {chosen} backend"
        + ("" if settings.auth else " [yellow](no API keys required)[/]")
    )
    with user_errors():
        run_server(project, host, port)


def with_serve_options(project: Project, host: str | None, backend: str | None, no_auth: bool) -> Project:
    """A copy of `project` whose serve settings take `--backend` and `--no-auth` (the project is left as it is)."""
    settings = project.config.serve
    changes: dict[str, object] = {}
    if backend is not None:
        if backend not in BACKENDS:
            raise TuneloomError(f"--backend {backend!r}: use auto, transformers, vllm or llamacpp")
        changes["backend"] = backend
    if no_auth:
        if (host or settings.host) not in LOOPBACK:
            raise TuneloomError("--no-auth is only allowed on a loopback address (--host 127.0.0.1)")
        changes["auth"] = False
    if not changes:
        return project
    config = project.config.model_copy(update={"serve": settings.model_copy(update=changes)})
    return project.model_copy(update={"config": config})


def _keys(config: Path) -> KeyStore:
    from tuneloom.serve.auth import KeyStore, keys_path

    return KeyStore(keys_path(load(config).workspace))


def keys_create(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model name the key may use (repeat; '*' = all).")],
    name: Annotated[str, typer.Option(help="A label, e.g. the application using the key.")] = "",
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Access tag of knowledge-base chunks it may see (repeat); default: every tag."),
    ] = None,
    public_only: Annotated[bool, typer.Option("--public-only", help="It sees untagged chunks only.")] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="serve (the /v1 API, default), reviewer or admin (the web console); repeat."),
    ] = None,
    config: ServeConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Create a key; it is printed once and stored only as a salted hash. Untagged chunks are visible to every key.

    Example: tuneloom keys create -m helpdesk-qa --name support-portal --tag support --scope serve --scope reviewer
    """
    with user_errors():
        if public_only and tag:
            raise TuneloomError("--public-only and --tag exclude each other: pick one")
        record, key = _keys(config).create(model, name, [] if public_only else tag or None, scope)
    seen = "every tag" if "*" in record.tags else ", ".join(record.tags) or "untagged chunks only"
    out.print(
        f"[green]✓[/] key {record.id} for {', '.join(record.models)}; knowledge: {seen}; "
        f"scopes: {', '.join(record.scopes)} (shown once; store it now):"
    )
    out.print(key, highlight=False, soft_wrap=True)


def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id from `tuneloom keys list`.")],
    config: ServeConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Revoke a key; a running server refuses it from its next request.

    Example: tuneloom keys revoke 3f9a2c41
    """
    with user_errors():
        record = _keys(config).revoke(key_id)
    out.print(f"[green]✓[/] key {record.id} revoked")


def keys_list(config: ServeConfigOpt = DEFAULT_CONFIG) -> None:
    """Every key: id, label, models, created, revoked (never the key itself).

    Example: tuneloom keys list -c tuneloom.yaml
    """
    with user_errors():
        records = _keys(config).list()
    table = Table(title="API keys")
    for col in ("id", "name", "models", "tags", "scopes", "created (UTC)", "revoked"):
        table.add_column(col)
    for r in records:
        tags = ", ".join(r.tags) or "(untagged only)"
        table.add_row(r.id, r.name, ", ".join(r.models), tags, ", ".join(r.scopes), r.created, r.revoked or "")
    out.print(table)
