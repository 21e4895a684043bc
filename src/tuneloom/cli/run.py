"""`tuneloom run`: the whole loop for every task, and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, SetOpt, err, load, out, quiet_libraries, user_errors
from tuneloom.cli.evaluate import baselines_table, comparison_table, retrieval_table

if TYPE_CHECKING:
    from tuneloom.loop import LoopResult

TasksOpt = Annotated[list[str] | None, typer.Option("--task", "-t", help="Only these tasks.")]


def run(config: ConfigOpt = DEFAULT_CONFIG, task: TasksOpt = None, set_: SetOpt = None) -> None:
    """The whole loop for every task: prepare data, train, evaluate base vs tuned, report.

    Example: tuneloom run -c tuneloom.yaml --set train.epochs=2
    """
    quiet_libraries()
    from tuneloom.loop import run_project

    with user_errors():
        project = load(config, set_)
        result = run_project(project, task, err)
    rows = [(t.task, m, c) for t in result.tasks for m, c in t.comparison.items()]
    out.print(comparison_table(f"{project.config.project}: base vs tuned on held-out test data", rows))
    _print_task_tables(result)
    _print_outcomes(result, config)


def _print_task_tables(result: LoopResult) -> None:
    """Per task: its cheap baselines beside the tuned model, and the comparison with and without retrieval."""
    from tuneloom.artifacts import read_eval

    for t in result.tasks:
        evaluated = read_eval(t.run_dir)
        if evaluated.baselines:
            table = baselines_table(evaluated)
            table.title = f"{t.task}: {table.title}"
            out.print(table)
        if t.retrieval is not None:
            out.print(retrieval_table(t.task, t.retrieval))


def _print_outcomes(result: LoopResult, config: Path) -> None:
    """Each task's forgetting check and gate verdict, the report and what to try next."""
    for t in result.tasks:
        if t.forgetting:
            out.print(
                f"forgetting check {t.task}: general-ability token F1 {t.forgetting['base']:.3f} (base) -> "
                f"{t.forgetting['tuned']:.3f} (tuned)"
            )
        if t.gate_rules:
            verdict = "[green]passed[/]" if t.gate_passed else "[bold red]failed[/]: " + "; ".join(t.gate_failures)
            out.print(f"gate {t.task}: {verdict} ({t.gate_rules} rules)")
    out.print(f"finished in {result.seconds / 60:.1f} min · report: [bold]{result.report}[/]")
    first = result.tasks[0]
    out.print(
        "next: open the report, change a setting and compare, e.g. "
        f"[bold]tuneloom train -c {config} --task {first.task} --set train.epochs=4[/] "
        f"then [bold]tuneloom eval latest:{first.task} -c {config}[/]"
    )
