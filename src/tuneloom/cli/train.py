"""`tuneloom train`: one task or every task, resumed, searched with Optuna, or launched in N processes."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, SetOpt, TaskOpt, err, load, out, quiet_libraries, user_errors
from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.artifacts import TrainResult
    from tuneloom.config import Project

ResumeOpt = Annotated[
    str | None, typer.Option("--resume", help="Continue an interrupted run (id or folder) from its last checkpoint.")
]
SearchOpt = Annotated[
    int | None, typer.Option("--search", help="Run N Optuna trials over the task's search: space (minimising validation loss).")
]
ProcessesOpt = Annotated[
    int | None, typer.Option("--processes", help="Data-parallel training in N processes through accelerate launch (gloo on CPU).")
]
LauncherOpt = Annotated[
    str | None,
    typer.Option("--launcher", help="'accelerate': run through accelerate launch (with --processes and/or --accelerate-config)."),
]
AccelerateConfigOpt = Annotated[
    str | None,
    typer.Option("--accelerate-config", help="accelerate config file, or a shipped one: fsdp, deepspeed-zero2, deepspeed-zero3."),
]


def train(
    config: ConfigOpt = DEFAULT_CONFIG,
    task: TaskOpt = None,
    set_: SetOpt = None,
    resume: ResumeOpt = None,
    search: SearchOpt = None,
    processes: ProcessesOpt = None,
    launcher: LauncherOpt = None,
    accelerate_config: AccelerateConfigOpt = None,
) -> None:
    """Train one task (full, LoRA, DoRA or QLoRA); prepares its data first when the data settings changed.

    Example: tuneloom train -c tuneloom.yaml --task helpdesk-qa --set train.epochs=2
    """
    quiet_libraries()
    from tuneloom.train import resume_run, train_task

    results: Iterable[TrainResult]
    with user_errors(FileNotFoundError):
        if resume:  # the run's own settings: --task and --set do not apply
            from tuneloom.workspace import locate_run

            results = [resume_run(locate_run(resume, config)[0], console=err)]
        else:
            project = load(config, set_)
            if wants_launcher(processes, launcher, accelerate_config, search):
                return run_launched(project, config, task, set_, processes, accelerate_config)
            if search is not None:
                return run_search(project, task, search)
            names = [project.config.task(task).name] if task else project.config.task_names()
            results = (train_task(project, name, console=err) for name in names)
        for result in results:
            _print_result(result)


def _print_result(result: TrainResult) -> None:
    out.print(
        f"[green]✓[/] {result.task}: {result.steps} steps, train loss {result.train_loss:.4f}"
        + (f", validation loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
        + f", {result.tokens_per_s:.0f} tokens/s"
    )
    out.print(f"  run: {result.run_dir}\n  next: tuneloom eval {Path(result.run_dir).name}")


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


def run_search(project: Project, task: str | None, n_trials: int) -> None:
    """Run the trials, print the table of every trial in the study and the best run."""
    from tuneloom.train.search import search_task

    result = search_task(project, task, n_trials, console=err)
    search = project.config.task(result.task).search
    assert search is not None  # search_task refuses a task without a `search:` section
    params = search.params()
    table = Table(title=f"{result.task}: Optuna study {result.study}, validation loss (lower is better)")
    for col in ("trial", "state", "validation loss", *params, "steps", "run"):
        table.add_column(col, justify="left" if col in ("state", "run") else "right")
    for t in result.trials:
        best = result.best is not None and t.number == result.best.number
        table.add_row(
            str(t.number),
            t.state,
            f"{t.value:.4f}" if t.value is not None else "",
            *(_fmt(t.params.get(p)) for p in params),
            str(t.steps or ""),
            t.run or "",
            style="bold green" if best else None,
        )
    out.print(table)
    if result.best is None:
        out.print("[yellow]no trial completed: see the messages above")
    else:
        out.print(
            f"[green]✓[/] best run: {result.best.run} (trial {result.best.number}, validation loss {result.best.value:.4f})"
        )
    out.print(f"  study: {result.storage}", soft_wrap=True)
    out.print(f"  report: {result.report}", soft_wrap=True)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_launched(
    project: Project,
    config: Path,
    task: str | None,
    overrides: list[str] | None,
    processes: int | None,
    accelerate_config: str | None,
) -> None:
    """Prepare the data once, train through accelerate launch, print what rank 0 wrote."""
    from tuneloom.artifacts import read_summary
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
        trained = read_summary(run_dir).train
        out.print(
            f"[green]✓[/] {name}: {trained.processes} processes, global batch {trained.global_batch_size}, "
            f"{trained.steps} steps, train loss {trained.train_loss:.4f}"
        )
        out.print(f"  run: {run_dir}")
