"""`tuneloom serve` and `tuneloom keys create | revoke | list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneloom.errors import TuneloomError

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project file or its folder (its workspace holds keys and feedback).")]


def add_serve_commands(app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add `serve` and the `keys` group to the top-level app."""
    keys_app = typer.Typer(help="API keys for `tuneloom serve` (stored hashed in the workspace).", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    def fail(exc: BaseException) -> None:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    def load(config: Path, overrides: list[str] | None = None):  # noqa: ANN202
        from tuneloom.config import load_project

        return load_project(config, overrides)

    @app.command("serve")
    def serve(
        config: ConfigOpt = Path("tuneloom.yaml"),
        host: Annotated[Optional[str], typer.Option(help="Address (default serve.host, 127.0.0.1).")] = None,
        port: Annotated[Optional[int], typer.Option(help="Port (default serve.port, 8000).")] = None,
        backend: Annotated[Optional[str], typer.Option(help="auto | transformers | vllm (default serve.backend).")] = None,
        no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (loopback only).")] = False,
    ) -> None:
        """Serve the registry's models (and the project's base models) with the OpenAI API."""
        from tuneloom.serve.app import serve as run_server
        from tuneloom.serve.backends import select_backend

        try:
            project = load(config)
            settings = project.config.serve
            if backend is not None:
                if backend not in ("auto", "transformers", "vllm"):
                    raise TuneloomError(f"--backend {backend!r}: use auto, transformers or vllm")
                settings.backend = backend
            if no_auth:
                if (host or settings.host) not in ("127.0.0.1", "localhost", "::1"):
                    raise TuneloomError("--no-auth is only allowed on a loopback address (--host 127.0.0.1)")
                settings.auth = False
            chosen = select_backend(settings.backend)
        except (TuneloomError, ValueError) as exc:
            fail(exc)
        err_console.print(f"serving {project.path.parent.name} on http://{host or settings.host}:"
                          f"{port if port is not None else settings.port}/v1 with the {chosen} backend"
                          + ("" if settings.auth else " [yellow](no API keys required)[/]"))
        try:
            run_server(project, host, port)
        except TuneloomError as exc:
            fail(exc)

    @keys_app.command("create")
    def create(
        model: Annotated[list[str], typer.Option("--model", "-m", help="Model name the key may use (repeat; '*' = all).")],
        name: Annotated[str, typer.Option(help="A label, e.g. the application using the key.")] = "",
        config: ConfigOpt = Path("tuneloom.yaml"),
    ) -> None:
        """Create a key; it is printed once and stored only as a salted hash."""
        from tuneloom.serve.auth import KeyStore, keys_path

        try:
            record, key = KeyStore(keys_path(load(config).workspace)).create(model, name)
        except TuneloomError as exc:
            fail(exc)
        console.print(f"[green]✓[/] key {record.id} for {', '.join(record.models)} (shown once; store it now):")
        console.print(key, highlight=False, soft_wrap=True)

    @keys_app.command("revoke")
    def revoke(key_id: Annotated[str, typer.Argument(help="Key id from `tuneloom keys list`.")],
               config: ConfigOpt = Path("tuneloom.yaml")) -> None:
        """Revoke a key; a running server refuses it from its next request."""
        from tuneloom.serve.auth import KeyStore, keys_path

        try:
            record = KeyStore(keys_path(load(config).workspace)).revoke(key_id)
        except TuneloomError as exc:
            fail(exc)
        console.print(f"[green]✓[/] key {record.id} revoked")

    @keys_app.command("list")
    def list_keys(config: ConfigOpt = Path("tuneloom.yaml")) -> None:
        """Every key: id, label, models, created, revoked (never the key itself)."""
        from tuneloom.serve.auth import KeyStore, keys_path

        try:
            records = KeyStore(keys_path(load(config).workspace)).list()
        except TuneloomError as exc:
            fail(exc)
        table = Table(title="API keys")
        for col in ("id", "name", "models", "created (UTC)", "revoked"):
            table.add_column(col)
        for r in records:
            table.add_row(r.id, r.name, ", ".join(r.models), r.created, r.revoked or "")
        console.print(table)
