"""The `tuneloom` command: a thin Typer layer over the Python API, rendered with Rich.

One module per stage holds its commands as plain functions (`project`, `data`, `catalog`, `train`,
`evaluate`, `registry`, `run`, `scout`, `serve`, `knowledge`, `ui`); `common` holds what they share. This module only
wires them into command groups. Every command imports the heavy stack (torch, transformers, MLflow)
inside its body, so `tuneloom --help` and `tuneloom config check` answer at once.
"""

from __future__ import annotations

import typer

from tuneloom.cli import (
    ask,
    catalog,
    data,
    evaluate,
    export,
    feedback,
    iterate,
    knowledge,
    project,
    registry,
    run,
    scout,
    serve,
    train,
    ui,
)

__all__ = ["app", "main"]

app = typer.Typer(
    help="Fine-tune open models into specialists for your company's work, on your own machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Validate and describe project files.", no_args_is_help=True)
schema_app = typer.Typer(
    help="JSON schemas of the workspace files (the project file's: `tuneloom config schema`).", no_args_is_help=True
)
data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
models_app = typer.Typer(
    help="Base models (catalog, local folders, hub ids) and the registry of tuned versions.", no_args_is_help=True
)
index_app = typer.Typer(help="Knowledge bases: build, update, search and describe their indexes.", no_args_is_help=True)
feedback_app = typer.Typer(
    help="Feedback on served answers: read it, review it into training rows, account for it.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys for `tuneloom serve` (stored hashed in the workspace).", no_args_is_help=True)

app.command("init")(project.init)
app.command("scout")(scout.scout)
app.command("train")(train.train)
app.command("eval")(evaluate.eval_)
app.command("gate")(evaluate.gate)
app.command("ship-baseline")(evaluate.ship_baseline)
app.command("run")(run.run)
app.command("serve")(serve.serve)
app.command("iterate")(iterate.iterate)
app.command("monitor")(iterate.monitor)
app.command("ask")(ask.ask)
app.command("export")(export.export)
app.command("ui")(ui.ui)

app.add_typer(config_app, name="config")
config_app.command("check")(project.config_check)
config_app.command("schema")(project.config_schema)

app.add_typer(schema_app, name="schema")
schema_app.command("artifacts")(project.schema_artifacts)

app.add_typer(data_app, name="data")
data_app.command("prepare")(data.prepare)

app.add_typer(models_app, name="models")
models_app.command("list")(catalog.models_list)
models_app.command("pull")(catalog.models_pull)
models_app.command("info")(catalog.models_info)
models_app.command("register")(registry.register)
models_app.command("promote")(registry.promote)
models_app.command("rollback")(registry.rollback)
models_app.command("history")(registry.history)
models_app.command("versions")(registry.versions)

app.add_typer(index_app, name="index")
index_app.command("build")(knowledge.build)
index_app.command("update")(knowledge.update)
index_app.command("search")(knowledge.search)
index_app.command("stats")(knowledge.stats)

app.add_typer(keys_app, name="keys")
keys_app.command("create")(serve.keys_create)
keys_app.command("revoke")(serve.keys_revoke)
keys_app.command("list")(serve.keys_list)

app.add_typer(feedback_app, name="feedback")
feedback_app.command("list")(feedback.list_)
feedback_app.command("show")(feedback.show)
feedback_app.command("stats")(feedback.stats)
feedback_app.command("review")(feedback.review)
feedback_app.command("accounting")(feedback.accounting)


def main() -> None:  # pragma: no cover - console entry point
    app()
