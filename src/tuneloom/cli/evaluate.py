"""`tuneloom eval`, `tuneloom gate` and `tuneloom ship-baseline`: score a run against its base (and production),
check the gate, make a baseline that wins a version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tuneloom.cli.common import (
    DEFAULT_CONFIG,
    ConfigOpt,
    RunArg,
    err,
    load,
    out,
    project_file_exists,
    quiet_libraries,
    user_errors,
)
from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.artifacts import EvalResult, RetrievalComparison
    from tuneloom.evaluate.gate import GateResult

TestDataOpt = Annotated[
    str | None,
    typer.Option(
        "--test-data",
        help="Test split of another prepared dataset folder, or 'production' for the production "
        "version's dataset (default: the run's own test split).",
    ),
]


def eval_(run: RunArg = "latest", config: ConfigOpt = DEFAULT_CONFIG, test_data: TestDataOpt = None) -> None:
    """Evaluate base, tuned and production on the held-out test split; writes eval.json and a report.

    Example: tuneloom eval latest:helpdesk-qa -c tuneloom.yaml --test-data production
    """
    quiet_libraries()
    from tuneloom.artifacts import EvalResult
    from tuneloom.evaluate import evaluate_run
    from tuneloom.evaluate.inputs import find_production, resolve_test_data
    from tuneloom.reports import write_report
    from tuneloom.workspace import locate_run

    with user_errors(FileNotFoundError):
        run_dir, ws = locate_run(run, config)
        production = find_production(run_dir, load(config) if project_file_exists(config) else None)
        if production is not None:
            err.print(f"comparing with production: {production.name}:{production.version}")
        dataset = resolve_test_data(test_data, production)
        result = EvalResult.model_validate(evaluate_run(run_dir, err, production=production, test_data=dataset))
        report = write_report([run_dir], run_dir, f"{result.task}: base vs tuned", ws.root)
    _print_eval(result)
    out.print(f"report: {report}")


def ship_baseline(
    run: RunArg = "latest",
    baseline: Annotated[
        str, typer.Option("--baseline", "-b", help="The baseline to ship (embedding_logreg).")
    ] = "embedding_logreg",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Make a run's cheap baseline a run of its own (frozen encoder + safetensors head), evaluated, to gate,
    register, promote and serve like a tuned version.

    Example: tuneloom ship-baseline latest:ticket-triage -c tuneloom.yaml
    """
    quiet_libraries()
    from tuneloom.evaluate import evaluate_run
    from tuneloom.evaluate.ship import ship_baseline as ship
    from tuneloom.reports import write_report
    from tuneloom.workspace import locate_run

    with user_errors(FileNotFoundError):
        run_dir, ws = locate_run(run, config)
        with err.status(f"fitting {baseline} on {run_dir.name}'s train split"):
            shipped = ship(run_dir, baseline)
        result = evaluate_run(shipped, err)
        report = write_report([shipped], shipped, f"{result.task}: baseline {baseline}", ws.root)
    _print_eval(result)
    out.print(f"[green]✓[/] baseline {baseline} is run {shipped.name}; report: {report}")
    out.print(f"  next: tuneloom gate {shipped.name} && tuneloom models register {shipped.name}")


def _print_eval(result: EvalResult) -> None:
    """The base vs tuned table, tuned vs production when scored, and the forgetting check."""
    out.print(
        comparison_table(
            f"{result.task} on {result.n_examples} test examples", [(result.task, m, c) for m, c in result.comparison.items()]
        )
    )
    if result.comparison_production is not None:
        rows = [(result.task, m, {**c, "base": c["production"]}) for m, c in result.comparison_production.items()]
        out.print(comparison_table(f"tuned vs production {result.production_version} (the 'base' column is production)", rows))
    if result.retrieval is not None:
        out.print(retrieval_table(result.task, result.retrieval))
    if result.baselines:
        out.print(baselines_table(result))
    forgetting = getattr(result, "forgetting", None)
    if forgetting:
        out.print(
            f"forgetting check ({forgetting['n']} general items): token F1 "
            f"{forgetting['base']['token_f1']:.3f} -> {forgetting['tuned']['token_f1']:.3f}"
        )


def retrieval_table(task: str, rag: RetrievalComparison) -> Table:
    """Each side's answer metrics with and without retrieval, the retrieval hit rate and the key changes."""
    hit = f"{rag.hit_rate:.0%}" if rag.hit_rate is not None else "n/a"
    table = Table(
        title=f"{task}: with and without retrieval ({rag.knowledge}, top {rag.top_k}; hit rate {hit} "
        f"of {rag.n_grounded} grounded questions)"
    )
    table.add_column("metric")
    for side in rag.sides:
        table.add_column(side, justify="right")
    for metric in ("token_f1", "rouge_l", "groundedness", "loss"):
        table.add_row(metric, *(f"{values[metric]:.4f}" for values in rag.sides.values()))
    changes = [(name, deltas["token_f1"]) for name, deltas in rag.deltas.items()]
    table.caption = "\n".join(f"{name}: token_f1 {d.delta:+.4f} [{d.low:+.3f}, {d.high:+.3f}]" for name, d in changes)
    return table


def comparison_table(title: str, rows: list[tuple[str, str, dict[str, Any]]]) -> Table:
    """One row per (task, metric): base, tuned, the change (green when better) and its 95% interval."""
    from tuneloom.config import LOWER_IS_BETTER

    table = Table(title=title)
    for col in ("task", "metric", "base", "tuned", "change", "95% CI of change"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, metric, c in rows:
        better = c["delta"] < 0 if metric in LOWER_IS_BETTER else c["delta"] > 0
        colour = "green" if better else ("red" if c["delta"] else "white")
        ci = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]" if "ci_low" in c else ""
        table.add_row(task, metric, f"{c['base']:.4f}", f"{c['tuned']:.4f}", f"[{colour}]{c['delta']:+.4f}[/]", ci)
    return table


def baselines_table(result: EvalResult) -> Table:
    """One row per (baseline, shown metric): its value, tuned's, tuned minus it and the 95% interval."""
    from tuneloom.config import LOWER_IS_BETTER

    table = Table(title=f"cheap baselines on the same {result.n_examples} test examples (fitted on the train split)")
    for col in ("baseline", "metric", "baseline value", "tuned", "tuned minus baseline", "95% CI", "fit s"):
        table.add_column(col, justify="left" if col in ("baseline", "metric") else "right")
    for name, b in (result.baselines or {}).items():
        if "skipped" in b:
            table.add_row(name, "", "[dim]skipped[/]", "", "", b["skipped"], "")
            continue
        for metric in [m for m in result.metrics_shown if m in b["metrics"]]:
            value, tuned = b["metrics"][metric], result.tuned[metric]
            lead = value - tuned if metric in LOWER_IS_BETTER else tuned - value
            ci = b["intervals"].get(metric)
            ci_text = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
            colour = "green" if lead > 0 else ("red" if lead < 0 else "white")
            table.add_row(
                name, metric, f"{value:.4f}", f"{tuned:.4f}", f"[{colour}]{tuned - value:+.4f}[/]", ci_text, f"{b['seconds']:.1f}"
            )
    return table


def gate(run: RunArg = "latest", config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Check an evaluated run against the task's gate rules; exit code 1 when a rule fails.

    Example: tuneloom gate latest:ticket-triage -c tuneloom.yaml
    """
    from tuneloom.evaluate.gate import choose_gate_rules, gate_run
    from tuneloom.workspace import locate_run

    with user_errors(FileNotFoundError):
        run_dir, _ = locate_run(run, config)
        if not (run_dir / "eval.json").is_file():
            raise TuneloomError(f"{run_dir} has not been evaluated: run `tuneloom eval {run_dir.name}` first")
        # a run named by its folder keeps the rules it was trained with; an id or `latest` takes the project's
        project = load(config) if project_file_exists(config) and not Path(run).is_dir() else None
        rules = choose_gate_rules(run_dir, project)
        result = gate_run(run_dir, rules.gate, rules.source)
    _print_gate(run_dir, rules.task, result)
    raise typer.Exit(0 if result.passed else 1)


def _print_gate(run_dir: Path, task: str, result: GateResult) -> None:
    table = Table(title=f"gate for {run_dir.name} (drops measured against {result.reference})")
    for col in ("rule", "result", "detail"):
        table.add_column(col)
    for r in result.rules:
        table.add_row(r.rule, "[green]pass[/]" if r.passed else "[red]FAIL[/]", r.detail)
    out.print(table)
    if not result.rules:
        out.print(f"[yellow]no gate rules configured for task {task}: add a `gate:` section to the project file")
    out.print("[green]gate passed[/]" if result.passed else "[bold red]gate failed[/]")
