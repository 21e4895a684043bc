"""`tuneloom init`, `tuneloom config check | schema` and `tuneloom schema artifacts`: project files and schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, err, fail, load, out, user_errors
from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.config import Project, TaskConfig

TEMPLATES = {"chat": "chat.yaml", "classification": "classification.yaml"}


def init(
    folder: Annotated[Path, typer.Argument(help="Where to write tuneloom.yaml.")] = Path("."),
    template: Annotated[str, typer.Option(help="chat or classification.")] = "chat",
    force: Annotated[bool, typer.Option(help="Overwrite an existing project file.")] = False,
) -> None:
    """Write a commented project file from a template.

    Example: tuneloom init my-project --template classification
    """
    if template not in TEMPLATES:
        fail(TuneloomError(f"unknown template '{template}'; choose one of {', '.join(TEMPLATES)}"))
    target = folder / "tuneloom.yaml"
    if target.exists() and not force:
        fail(TuneloomError(f"{target} exists; pass --force to overwrite it"))
    from importlib.resources import files

    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(files("tuneloom").joinpath("templates", TEMPLATES[template]).read_text())
    out.print(f"wrote {target} ({template} template). Point data.sources at your files, then run [bold]tuneloom config check[/].")


def config_check(
    path: Annotated[
        Path | None, typer.Argument(help="Project file or its folder (the same as --config).", show_default=False)
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Validate the project file, its data sources and its models (no downloads, no training).

    Example: tuneloom config check tuneloom.yaml
    """
    with user_errors():
        project = load(path or config)
    problems: list[str] = []
    table = Table(title=f"{project.path}")
    for col in ("task", "type", "model", "method", "sources", "model status"):
        table.add_column(col)
    for task in project.config.tasks:
        sources, status = _check_task(project, task, problems)
        table.add_row(task.name, task.type, task.model, task.method.kind, "\n".join(sources), status)
    out.print(table)
    if problems:
        for p in problems:
            err.print(f"[red]✗[/] {p}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    out.print("[green]✓[/] project file is valid, data sources readable, models available")


def _check_task(project: Project, task: TaskConfig, problems: list[str]) -> tuple[list[str], str]:
    """One note per data source and the model's status; what is wrong is appended to `problems`."""
    from tuneloom.catalog import model_status
    from tuneloom.data.ingest import read_source

    notes = []
    for source in task.data.sources:
        path = project.source_path(source)
        try:
            rows = read_source(path, source)
            missing = [c for c in task.data.columns.required() if rows and c not in rows[0][1]]
            if missing:
                raise TuneloomError(f"{path}: mapped column(s) {missing} not found; columns are {list(rows[0][1])}")
            notes.append(f"{source.path} ({len(rows)} rows)")
        except TuneloomError as exc:
            problems.append(f"task {task.name}: {exc}")
            notes.append(f"{source.path} (problem)")
    try:
        status = model_status(task.model, task.trust_remote_code)
    except TuneloomError as exc:
        problems.append(f"task {task.name}: {exc}")
        status = "not available"
    return notes, status


def config_schema() -> None:
    """Print the project file's JSON schema.

    Example: tuneloom config schema > tuneloom.schema.json
    """
    from tuneloom.config import project_schema

    print(json.dumps(project_schema(), indent=2))


def schema_artifacts() -> None:
    """Print the JSON schema of every file one stage writes and another reads, keyed by its place in the workspace.

    Example: tuneloom schema artifacts > artifacts.schema.json
    """
    from tuneloom.artifacts import artifact_schemas

    print(json.dumps(artifact_schemas(), indent=2))
