"""`tuneloom ui`: the web console for one project (loopback unless --allow-remote)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneloom.cli.common import DEFAULT_CONFIG, config_option, err, load, user_errors
from tuneloom.errors import TuneloomError

UiConfigOpt = Annotated[Path, config_option("Project file or its folder (the console shows its workspace).")]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address without --allow-remote; warn when it is allowed."""
    if host in LOOPBACK:
        return
    if not allow_remote:
        raise TuneloomError(
            f"--host {host} is reachable from other machines: add --allow-remote to serve the console there "
            "(put it behind TLS; logins are API keys)"
        )
    err.print(
        f"[bold yellow]warning:[/] the console listens on {host}: anyone who can reach it can try API keys. "
        "Serve it behind TLS (a reverse proxy) and give out reviewer keys where admin is not needed.",
        soft_wrap=True,
    )


def ui(
    config: UiConfigOpt = DEFAULT_CONFIG,
    host: Annotated[str, typer.Option(help="Address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8300,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-loopback --host (prints a warning).")] = False,
) -> None:
    """Open the web console: project, data, runs and jobs, evaluation, registry, playground, feedback, scout.

    Log in with an API key that has the admin or reviewer scope (tuneloom keys create --scope admin).

    Example: tuneloom ui -c tuneloom.yaml --port 8300
    """
    from tuneloom.ui import run_console

    with user_errors():
        check_host(host, allow_remote)
        project = load(config)
    err.print(f"console for {project.config.project} on http://{host}:{port}/ (Ctrl+C stops it; running jobs go on)")
    with user_errors():
        run_console(project, host, port)
