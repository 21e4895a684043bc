"""`tuneloom iterate` (one turn of the feedback loop) and `tuneloom monitor` (canary vs production)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, SetOpt, err, load, out, quiet_libraries, user_errors

if TYPE_CHECKING:
    from tuneloom.iterate import CanaryReport

OneTaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Task name (needed when the project has several).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def iterate(
    config: ConfigOpt = DEFAULT_CONFIG,
    task: OneTaskOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Train, evaluate, gate and register; do not promote.")] = False,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for another iterate of the task to finish.")] = 0.0,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One turn of the feedback loop: accepted feedback -> new dataset version -> retrain -> evaluate
    against production (golden test set and held-out feedback) -> gate -> register -> promote.

    Exit codes: 0 promoted (or passed, with --dry-run), 1 gate failed, 3 nothing new to learn from
    (fewer than iterate.min_new_rows), 4 busy or feedback database unavailable (run again), 2 other errors.
    A run killed half-way resumes where it stopped when started again.

    Example: tuneloom iterate -c tuneloom.yaml --task support-qa --dry-run
    """
    quiet_libraries()
    from tuneloom.iterate import EXIT_RETRY, FeedbackUnavailable, IterateBusy, iterate_task, summary_lines

    with user_errors():
        project = load(config, set_)
        try:
            summary = iterate_task(project, task, dry_run=dry_run, wait_s=wait, console=err)
        except (IterateBusy, FeedbackUnavailable) as exc:  # worth retrying later: its own exit code
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_RETRY) from None
    if json_:
        out.print_json(summary.model_dump_json())
    else:
        for line in summary_lines(summary):
            out.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)


def monitor(
    config: ConfigOpt = DEFAULT_CONFIG,
    task: OneTaskOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report the decision; do not promote or roll back.")] = False,
    watch: Annotated[
        float | None, typer.Option("--watch", help="Check again every this many seconds until the canary is decided.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Compare the canary with production on live feedback (thumbs-up rate, corrections per request,
    latency, with intervals) and apply the project's canary rules: promote or roll back, with the
    reason in the registry history. A running `tuneloom serve` follows within serve.alias_ttl_s.

    Example: tuneloom monitor -c tuneloom.yaml --task support-qa --watch 60
    """
    from tuneloom.iterate import monitor_canary

    with user_errors():
        project = load(config)
        while True:
            report = monitor_canary(project, task, apply=False if dry_run else None)
            _show(report, json_)
            if watch is None or report.decision in ("none", "promote", "rollback"):
                return
            time.sleep(watch)


def _show(report: CanaryReport, json_: bool) -> None:
    if json_:
        out.print_json(report.model_dump_json())
        return
    if report.arms:
        table = Table(title=f"{report.model}: canary {report.canary} vs production {report.production} since {report.since}")
        for col in ("side", "requests", "rated", "thumbs-up rate", "corrections/request", "latency ms"):
            table.add_column(col, justify="left" if col == "side" else "right")
        for side, a in report.arms.items():
            table.add_row(
                f"{side} ({a.served})",
                str(a.requests),
                str(a.rated),
                f"{a.up_rate:.1%} [{a.up_interval[0]:.1%}, {a.up_interval[1]:.1%}]",
                f"{a.corrections_per_request:.1%} [{a.corrections_interval[0]:.1%}, {a.corrections_interval[1]:.1%}]",
                f"{a.latency_ms:.0f} [{a.latency_interval[0]:.0f}, {a.latency_interval[1]:.0f}]",
            )
        out.print(table)
    applied = " (applied)" if report.applied else ""
    out.print(f"decision: [bold]{report.decision}[/]{applied}: {report.reason}", soft_wrap=True)
    if not report.applied and report.decision in ("promote", "rollback"):
        err.print("not applied: --dry-run or canary.auto is false")
