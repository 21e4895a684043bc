"""`tuneloom models register | promote | rollback | history | versions`: the registry on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from tuneloom.errors import TuneloomError
from tuneloom.workspace import locate_run

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project file or its folder (its workspace holds the registry).")]
NameArg = Annotated[str, typer.Argument(help="Registered model name.")]


def _project_exists(config: Path) -> bool:
    return (config / "tuneloom.yaml").is_file() if config.is_dir() else config.is_file()


def open_registry(config: Path, run_dir: Path | None = None):  # noqa: ANN201
    """The registry of the project file; without one, that of the workspace holding `run_dir`."""
    from tuneloom.registry.client import ModelRegistry

    if run_dir is not None and not _project_exists(config):
        return ModelRegistry(run_dir.parent.parent)  # runs/<id> sits in the workspace
    from tuneloom.config import load_project
    from tuneloom.registry.lookup import registry_for

    return registry_for(load_project(config))


def add_registry_commands(models_app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add the registry commands to the `tuneloom models` group."""

    def fail(exc: BaseException) -> None:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    @models_app.command("register")
    def register(
        run: Annotated[str, typer.Argument(help="Run id, run folder, 'latest' or 'latest:TASK'.")],
        name: Annotated[Optional[str], typer.Option(
            "--name", "-n", help="Registered model name (default: the task's registry_name, else the task name).")] = None,
        config: ConfigOpt = Path("tuneloom.yaml"),
    ) -> None:
        """Register a finished run's model as a new version, with its lineage and gate result."""
        try:
            run_dir, _ = locate_run(run, config)
            registry = open_registry(config, run_dir)
            if name is None:
                task = yaml.safe_load((run_dir / "config.yaml").read_text())["task"]
                name = task.get("registry_name") or task["name"]
            with err_console.status(f"registering {run_dir.name} as {name}"):
                info = registry.register_run(run_dir, name)
        except (TuneloomError, FileNotFoundError) as exc:
            fail(exc)
        gate = {"passed": "[green]gate passed[/]", "failed": "[red]gate failed[/]"}.get(info.gate or "", "[yellow]no gate result[/]")
        console.print(f"[green]✓[/] {run_dir.name} registered as [bold]{name}[/] version {info.version} ({gate})")
        console.print(f"  registry: {registry.display_uri}\n  next: tuneloom models promote {name} {info.version}")

    @models_app.command("promote")
    def promote(
        name: NameArg,
        version: Annotated[int, typer.Argument(help="Version number to put in production.")],
        force: Annotated[bool, typer.Option("--force", help="Promote even without a passed gate (needs --reason).")] = False,
        reason: Annotated[Optional[str], typer.Option("--reason", help="Why; recorded in the history.")] = None,
        config: ConfigOpt = Path("tuneloom.yaml"),
    ) -> None:
        """Point the `production` alias at a version whose regression gate passed."""
        try:
            entry = open_registry(config).promote(name, version, force=force, reason=reason)
        except TuneloomError as exc:
            fail(exc)
        if entry is None:
            console.print(f"{name} version {version} already is production; nothing changed")
            return
        was = f" (was version {entry.from_version})" if entry.from_version is not None else ""
        forced = f" [yellow]forced: {entry.reason}[/]" if entry.forced else ""
        console.print(f"[green]✓[/] {name}: production is now version {version}{was}{forced}")

    @models_app.command("rollback")
    def rollback(
        name: NameArg,
        reason: Annotated[Optional[str], typer.Option("--reason", help="Why; recorded in the history.")] = None,
        config: ConfigOpt = Path("tuneloom.yaml"),
    ) -> None:
        """Move `production` back to the version that held it before the current one."""
        try:
            entry = open_registry(config).rollback(name, reason)
        except TuneloomError as exc:
            fail(exc)
        console.print(f"[green]✓[/] {name}: production rolled back from version {entry.from_version} "
                      f"to version {entry.to_version}")

    @models_app.command("history")
    def history(name: NameArg, config: ConfigOpt = Path("tuneloom.yaml")) -> None:
        """Every change of `production`: when, from which version to which, forced or not, why."""
        try:
            registry = open_registry(config)
            entries = registry.history(name)
            current = registry.production(name)
        except TuneloomError as exc:
            fail(exc)
        table = Table(title=f"{name}: production history")
        for col in ("#", "time (UTC)", "action", "from", "to", "forced", "reason"):
            table.add_column(col, justify="right" if col in ("#", "from", "to") else "left")
        for e in entries:
            table.add_row(str(e.seq), e.time, e.action, "-" if e.from_version is None else str(e.from_version),
                          str(e.to_version), "[yellow]yes[/]" if e.forced else "no", e.reason or "")
        console.print(table)
        console.print(f"production: version {current}" if current is not None else "production: none yet")

    @models_app.command("versions")
    def versions(name: NameArg, config: ConfigOpt = Path("tuneloom.yaml")) -> None:
        """Every registered version with its gate result, lineage and aliases."""
        try:
            found = open_registry(config).list_versions(name)
        except TuneloomError as exc:
            fail(exc)
        table = Table(title=f"{name}: versions")
        for col in ("version", "aliases", "gate", "created (UTC)", "base model", "dataset", "run"):
            table.add_column(col, overflow="fold")
        colours = {"passed": "green", "failed": "red"}
        for v in found:
            gate = f"[{colours[v.gate]}]{v.gate}[/]" if v.gate in colours else "[yellow]none[/]"
            table.add_row(str(v.version), ", ".join(v.aliases), gate, v.created.replace("T", " ").rstrip("Z"),
                          v.lineage.get("base_model", ""), v.lineage.get("dataset_version", ""),
                          Path(v.lineage.get("run_dir", "")).name)
        console.print(table)
