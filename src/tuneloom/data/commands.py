"""`tuneloom data ...` commands: a thin layer over `prepare_dataset`, rendered with Rich."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneloom.errors import TuneloomError

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project file or its folder.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", "-t", help="Task name (default: every task).")]


def add_data_commands(data_app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add the data commands to the `tuneloom data` group."""

    @data_app.command("prepare")
    def prepare(config: ConfigOpt = Path("tuneloom.yaml"), task: TaskOpt = None) -> None:
        """Ingest, clean, deduplicate, redact and split each task's sources into a versioned dataset with a report."""
        from tuneloom.config import load_project
        from tuneloom.data import prepare_dataset

        try:
            project = load_project(config)
            names = [project.config.task(task).name] if task else project.config.task_names()
            for name in names:
                ds = prepare_dataset(project, name, log=lambda m: err_console.print(f"  {m}", highlight=False))
                table = Table(title=f"{name}: dataset {ds.version}{' (reused)' if ds.reused else ''}")
                for col in ("source", "read", "kept", "rejected", "duplicates (near)", "redacted"):
                    table.add_column(col)
                for s in ds.sources:
                    rejected = ", ".join(f"{k} {v}" for k, v in s.rejected.items()) or "0"
                    redacted = ", ".join(f"{k} {v}" for k, v in s.redacted.items()) or "-"
                    table.add_row(Path(s.path).name, str(s.read), str(s.kept), rejected,
                                  f"{s.duplicates} ({s.near_duplicates})", redacted)
                console.print(table)
                console.print(f"splits: {ds.counts}" + (f"  labels: {len(ds.labels)}" if ds.labels else ""))
                console.print(f"written to {ds.path} (report: {Path(ds.path) / 'report.html'})")
        except TuneloomError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
