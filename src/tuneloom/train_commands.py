"""`tuneloom train --search N` and `tuneloom train --processes N | --launcher accelerate`: options and output.

Kept outside `tuneloom.train` so that importing the CLI does not import torch and transformers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneloom.config import Project
from tuneloom.errors import TuneloomError

SearchOpt = Annotated[Optional[int], typer.Option(
    "--search", help="Run N Optuna trials over the task's search: space (minimising validation loss).")]
ProcessesOpt = Annotated[Optional[int], typer.Option(
    "--processes", help="Data-parallel training in N processes through accelerate launch (gloo on CPU).")]
LauncherOpt = Annotated[Optional[str], typer.Option(
    "--launcher", help="'accelerate': run through accelerate launch (with --processes and/or --accelerate-config).")]
AccelerateConfigOpt = Annotated[Optional[str], typer.Option(
    "--accelerate-config", help="accelerate config file, or a shipped one: fsdp, deepspeed-zero2, deepspeed-zero3.")]


def wants_launcher(processes: int | None, launcher: str | None, accelerate_config: str | None, search: int | None = None) -> bool:
    """Whether the options ask for accelerate launch; raises on combinations that cannot work."""
    launched = bool(launcher or processes or accelerate_config)
    if launched and search is not None:
        raise TuneloomError("--search runs its trials in this process; it cannot be combined with --processes or --launcher")
    if launcher not in (None, "accelerate"):
        raise TuneloomError(f"--launcher {launcher}: the only launcher is 'accelerate'")
    if processes is not None and processes < 1:
        raise TuneloomError(f"--processes {processes}: give 1 or more processes")
    return launched


def run_search(project: Project, task: str | None, n_trials: int, out: Console, err: Console) -> None:
    """Run the trials, print the table of every trial in the study and the best run."""
    from tuneloom.train.search import search_task

    result = search_task(project, task, n_trials, console=err)
    params = project.config.task(result.task).search.params()  # type: ignore[union-attr]
    table = Table(title=f"{result.task}: Optuna study {result.study}, validation loss (lower is better)")
    for col in ("trial", "state", "validation loss", *params, "steps", "run"):
        table.add_column(col, justify="left" if col in ("state", "run") else "right")
    for t in result.trials:
        best = result.best is not None and t.number == result.best.number
        table.add_row(str(t.number), t.state, f"{t.value:.4f}" if t.value is not None else "",
                      *(_fmt(t.params.get(p)) for p in params), str(t.steps or ""), t.run or "",
                      style="bold green" if best else None)
    out.print(table)
    if result.best is None:
        out.print("[yellow]no trial completed: see the messages above")
    else:
        out.print(f"[green]✓[/] best run: {result.best.run} (trial {result.best.number}, validation loss {result.best.value:.4f})")
    out.print(f"  study: {result.storage}", soft_wrap=True)
    out.print(f"  report: {result.report}", soft_wrap=True)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_launched(project: Project, config: Path, task: str | None, overrides: list[str] | None, processes: int | None,
                 accelerate_config: str | None, out: Console, err: Console) -> None:
    """Prepare the data once, train through accelerate launch, print what rank 0 wrote."""
    from tuneloom.data import prepare_dataset
    from tuneloom.train.distributed import launch
    from tuneloom.workspace import Workspace

    names = [project.config.task(task).name] if task else project.config.task_names()
    for name in names:
        prepare_dataset(project, name, log=lambda m: err.print(f"  {m}", highlight=False))
        args = ["-c", str(config), "--task", name, *(a for o in overrides or [] for a in ("--set", o))]
        err.print(f"[bold]{name}[/]: accelerate launch, {processes or 'config'} processes")
        sys.stdout.flush()
        launch(args, processes, accelerate_config)
        run_dir = Workspace(project.workspace).run_dir(f"latest:{name}")
        train = json.loads((run_dir / "summary.json").read_text())["train"]
        out.print(f"[green]✓[/] {name}: {train['processes']} processes, global batch {train['global_batch_size']}, "
                  f"{train['steps']} steps, train loss {train['train_loss']:.4f}")
        out.print(f"  run: {run_dir}")
