"""`tuneloom scout`: compare candidate base models on this machine and the task's own data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, TaskOpt, err, load, out, user_errors

if TYPE_CHECKING:
    from tuneloom.scout import ScoutResult, TaskScout


def scout(
    config: ConfigOpt = DEFAULT_CONFIG,
    task: TaskOpt = None,
    apply: Annotated[bool, typer.Option("--apply", help="Write each task's recommended model into the project file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Compare candidate base models on this machine and the task's validation data; recommend one.

    Example: tuneloom scout -c tuneloom.yaml --task ticket-triage --apply
    """
    from tuneloom.scout import scout_models

    with user_errors():
        result = scout_models(load(config), task, apply=apply, console=err)
    if as_json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
        return
    _print_result(result, apply)


def _print_result(result: ScoutResult, apply: bool) -> None:
    for t in result.tasks:
        out.print(_table(t))
        out.print(f"[bold]Recommendation[/] for {t.task}: {t.reason}", soft_wrap=True)
    out.print("Full errors, every score and the training estimates are in the report.")
    for line in result.applied:
        out.print(f"[green]applied[/] {line}")
    if apply and not result.applied:
        out.print("--apply: nothing to change (each task already uses its recommended model, or none was recommended)")
    out.print(f"{result.seconds:.0f} s of a {result.budget_s:.0f} s budget · report {result.report} · JSON {result.json_path}")


def _table(task: TaskScout) -> Table:
    """One row per candidate: quality, memory, speed, the LoRA estimate and its status."""
    table = Table(
        title=f"{task.task}: {task.quality_metric} on {task.sample_size} validation examples"
        + (" (sampled)" if task.sampled else "")
    )
    for col in (
        "#",
        "candidate",
        "params",
        task.quality_metric,
        "peak MB",
        "latency ms",
        "decode tok/s b1",
        "decode tok/s b8",
        "est. LoRA GB",
        "status",
    ):
        table.add_column(
            col, justify="right" if col not in ("candidate", "status") else "left", no_wrap=col == "candidate", overflow="fold"
        )
    for r in task.rows:
        m, f = r.measurement, r.facts
        status = (
            f"[red]{r.error.split('. ')[0][:90]}"
            if r.error
            else f"[yellow]{'; '.join(r.violations)}"
            if r.violations
            else "[bold green]recommended"
            if r.recommended
            else "ok"
        )
        lora = r.estimates.get("lora")
        table.add_row(
            str(r.rank or ""),
            r.name,
            f"{f.parameters / 1e6:.1f} M" if f else "",
            f"{r.quality:.3f}" if r.quality is not None else "",
            f"{m.peak_memory_mb:.0f}" if m else "",
            f"{m.latency_ms:.0f}" if m else "",
            f"{m.decode_tokens_per_s_b1:.1f}" if m and m.decode_tokens_per_s_b1 else "",
            f"{m.decode_tokens_per_s_b8:.1f}" if m and m.decode_tokens_per_s_b8 else "",
            (f"{lora.gb:.2f}" + ("" if lora.fits else " (no fit)")) if lora else "",
            status,
        )
    return table
