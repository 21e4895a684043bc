"""`tuneloom models register | promote | rollback | history | versions`: the registry of tuned versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import (
    DEFAULT_CONFIG,
    RunArg,
    config_option,
    err,
    load,
    out,
    project_file_exists,
    user_errors,
)

if TYPE_CHECKING:
    from tuneloom.registry import ModelRegistry

RegistryConfigOpt = Annotated[Path, config_option("Project file or its folder (its workspace holds the registry).")]
NameArg = Annotated[str, typer.Argument(help="Registered model name.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why; recorded in the history.")]


def open_registry(config: Path, run_dir: Path | None = None) -> ModelRegistry:
    """The registry of the project file; without one, that of the workspace holding `run_dir`."""
    from tuneloom.registry import ModelRegistry
    from tuneloom.registry.lookup import registry_for

    if run_dir is not None and not project_file_exists(config):
        return ModelRegistry(run_dir.parent.parent)  # runs/<id> sits in the workspace
    return registry_for(load(config))


def register(
    run: RunArg,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Registered model name (default: the task's registry_name, else the task name)."),
    ] = None,
    config: RegistryConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Register a finished run's model as a new version, with its lineage and gate result.

    Example: tuneloom models register latest:helpdesk-qa -c tuneloom.yaml
    """
    from tuneloom.artifacts import read_snapshot
    from tuneloom.workspace import locate_run

    with user_errors(FileNotFoundError):
        run_dir, _ = locate_run(run, config)
        registry = open_registry(config, run_dir)
        if name is None:
            task = read_snapshot(run_dir).task_config()
            name = task.registry_name or task.name
        with err.status(f"registering {run_dir.name} as {name}"):
            info = registry.register_run(run_dir, name)
    gate = {"passed": "[green]gate passed[/]", "failed": "[red]gate failed[/]"}.get(info.gate or "", "[yellow]no gate result[/]")
    out.print(f"[green]✓[/] {run_dir.name} registered as [bold]{name}[/] version {info.version} ({gate})")
    out.print(f"  registry: {registry.display_uri}\n  next: tuneloom models promote {name} {info.version}")


def promote(
    name: NameArg,
    version: Annotated[int, typer.Argument(help="Version number to put in production.")],
    force: Annotated[bool, typer.Option("--force", help="Promote even without a passed gate (needs --reason).")] = False,
    reason: ReasonOpt = None,
    config: RegistryConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Point the `production` alias at a version whose regression gate passed.

    Example: tuneloom models promote helpdesk-qa 3
    """
    with user_errors():
        entry = open_registry(config).promote(name, version, force=force, reason=reason)
    if entry is None:
        out.print(f"{name} version {version} already is production; nothing changed")
        return
    was = f" (was version {entry.from_version})" if entry.from_version is not None else ""
    forced = f" [yellow]forced: {entry.reason}[/]" if entry.forced else ""
    out.print(f"[green]✓[/] {name}: production is now version {version}{was}{forced}")


def rollback(name: NameArg, reason: ReasonOpt = None, config: RegistryConfigOpt = DEFAULT_CONFIG) -> None:
    """Move `production` back to the version that held it before the current one.

    Example: tuneloom models rollback helpdesk-qa --reason "answers got longer"
    """
    with user_errors():
        entry = open_registry(config).rollback(name, reason)
    out.print(f"[green]✓[/] {name}: production rolled back from version {entry.from_version} to version {entry.to_version}")


def history(name: NameArg, config: RegistryConfigOpt = DEFAULT_CONFIG) -> None:
    """Every change of `production`: when, from which version to which, forced or not, why.

    Example: tuneloom models history helpdesk-qa
    """
    with user_errors():
        registry = open_registry(config)
        entries = registry.history(name)
        current = registry.production(name)
    table = Table(title=f"{name}: production history")
    for col in ("#", "time (UTC)", "action", "from", "to", "forced", "reason"):
        table.add_column(col, justify="right" if col in ("#", "from", "to") else "left")
    for e in entries:
        table.add_row(
            str(e.seq),
            e.time,
            e.action,
            "-" if e.from_version is None else str(e.from_version),
            str(e.to_version),
            "[yellow]yes[/]" if e.forced else "no",
            e.reason or "",
        )
    out.print(table)
    out.print(f"production: version {current}" if current is not None else "production: none yet")


def versions(name: NameArg, config: RegistryConfigOpt = DEFAULT_CONFIG) -> None:
    """Every registered version with its gate result, lineage and aliases.

    Example: tuneloom models versions helpdesk-qa
    """
    with user_errors():
        found = open_registry(config).list_versions(name)
    table = Table(title=f"{name}: versions")
    for col in ("version", "aliases", "gate", "created (UTC)", "base model", "dataset", "run"):
        table.add_column(col, overflow="fold")
    colours = {"passed": "green", "failed": "red"}
    for v in found:
        gate = f"[{colours[v.gate]}]{v.gate}[/]" if v.gate in colours else "[yellow]none[/]"
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            gate,
            v.created.replace("T", " ").rstrip("Z"),
            v.lineage.get("base_model", ""),
            v.lineage.get("dataset_version", ""),
            Path(v.lineage.get("run_dir", "")).name,
        )
    out.print(table)
