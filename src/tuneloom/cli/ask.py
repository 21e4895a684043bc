"""`tuneloom ask`: one question answered from a knowledge base, with numbered sources."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, SetOpt, err, load, out, quiet_libraries, user_errors

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Run (id, folder, latest:TASK), registry reference (name, name:N, name@alias) or catalog model "
        "(default: the task's production version, else its latest run).",
    ),
]
KnowledgeOpt = Annotated[
    str | None, typer.Option("--knowledge", "-k", help="Knowledge base (default: the one the chat task names).")
]
TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Chat task whose prompt settings to use.")]


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    model: ModelOpt = None,
    knowledge: KnowledgeOpt = None,
    task: TaskOpt = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    overrides: SetOpt = None,
) -> None:
    """Answer a question with a chat model and the passages retrieved for it, listing the sources by number.

    Example: tuneloom ask "Can I return a used Cam Mini?" --model support-qa@production -c tuneloom.yaml
    """
    quiet_libraries()
    from tuneloom.knowledge.ask import ask as ask_question
    from tuneloom.knowledge.prompting import source_label

    with user_errors(FileNotFoundError):
        answer = ask_question(load(config, overrides), question, model=model, knowledge=knowledge, task=task)
    out.print(escape(answer.answer) or "[dim](empty answer)[/]")
    out.print(f"\n[bold]Sources[/] ({escape(answer.knowledge)}):" if answer.sources else "\n[dim]no passages retrieved[/]")
    for n, hit in enumerate(answer.sources, 1):
        out.print(f"  [{n}] {escape(source_label(hit.chunk))}  [dim]{escape(hit.chunk.chunk_id)} · score {hit.score:.3f}[/]")
    err.print(f"[dim]answered by {escape(answer.model)}[/]")
