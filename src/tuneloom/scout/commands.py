"""`tuneloom scout`: the command line over `scout_models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneloom.errors import TuneloomError

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project file or its folder.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", "-t", help="Scout one task (default: every task).")]


def _table(task) -> Table:  # noqa: ANN001 (a TaskScout)
    table = Table(title=f"{task.task}: {task.quality_metric} on {task.sample_size} validation examples"
                  + (" (sampled)" if task.sampled else ""))
    for col in ("#", "candidate", "params", task.quality_metric, "peak MB", "latency ms", "decode tok/s b1",
                "decode tok/s b8", "est. LoRA GB", "status"):
        table.add_column(col, justify="right" if col not in ("candidate", "status") else "left",
                         no_wrap=col == "candidate", overflow="fold")
    for r in task.rows:
        m, f = r.measurement, r.facts
        status = (f"[red]{r.error.split('. ')[0][:90]}" if r.error else f"[yellow]{'; '.join(r.violations)}" if r.violations
                  else "[bold green]recommended" if r.recommended else "ok")
        lora = r.estimates.get("lora")
        table.add_row(
            str(r.rank or ""), r.name, f"{f.parameters / 1e6:.1f} M" if f else "",
            f"{r.quality:.3f}" if r.quality is not None else "",
            f"{m.peak_memory_mb:.0f}" if m else "", f"{m.latency_ms:.0f}" if m else "",
            f"{m.decode_tokens_per_s_b1:.1f}" if m and m.decode_tokens_per_s_b1 else "",
            f"{m.decode_tokens_per_s_b8:.1f}" if m and m.decode_tokens_per_s_b8 else "",
            (f"{lora.gb:.2f}" + ("" if lora.fits else " (no fit)")) if lora else "", status,
        )
    return table


def add_scout_command(app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add `tuneloom scout` to the top-level command group."""

    @app.command()
    def scout(
        config: ConfigOpt = Path("tuneloom.yaml"),
        task: TaskOpt = None,
        apply: Annotated[bool, typer.Option("--apply", help="Write each task's recommended model into the project file.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Compare candidate base models on this machine and the task's validation data; recommend one."""
        from tuneloom.config import load_project
        from tuneloom.scout import scout_models

        try:
            result = scout_models(load_project(config), task, apply=apply, console=err_console)
        except TuneloomError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        if as_json:
            print(json.dumps(result.model_dump(mode="json"), indent=2))
            return
        for t in result.tasks:
            console.print(_table(t))
            console.print(f"[bold]Recommendation[/] for {t.task}: {t.reason}", soft_wrap=True)
        console.print("Full errors, every score and the training estimates are in the report.")
        for line in result.applied:
            console.print(f"[green]applied[/] {line}")
        if apply and not result.applied:
            console.print("--apply: nothing to change (each task already uses its recommended model, or none was recommended)")
        console.print(f"{result.seconds:.0f} s of a {result.budget_s:.0f} s budget · report {result.report} · JSON {result.json_path}")
