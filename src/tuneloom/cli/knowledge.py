"""`tuneloom index build|update|search|stats`: knowledge-base indexes from the project's `knowledge:` section."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, err, fail, load, out, quiet_libraries, user_errors

if TYPE_CHECKING:
    from tuneloom.artifacts import IndexStats
    from tuneloom.config import Project

NameArg = Annotated[str | None, typer.Argument(help="Knowledge base name (default: every knowledge base).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _names(project: Project, name: str | None) -> list[str]:
    if name:
        return [project.config.knowledge_base(name).name]
    names = [k.name for k in project.config.knowledge]
    if not names:
        fail(ValueError("the project file has no `knowledge:` section; add a knowledge base first"))
    return names


def build(name: NameArg = None, config: ConfigOpt = DEFAULT_CONFIG, quiet: QuietOpt = False) -> None:
    """Index every document of a knowledge base from scratch (chunk, embed, store).

    Example: tuneloom index build handbook -c tuneloom.yaml
    """
    quiet_libraries()
    from tuneloom.knowledge import build_index

    with user_errors():
        project = load(config)
        for kb in _names(project, name):
            _print_stats(build_index(project, kb, progress=not quiet), "built")


def update(
    name: NameArg = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    reembed: Annotated[bool, typer.Option("--reembed", help="Embed every document again (after an embedder change).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed only new and changed documents and remove deleted ones (a stopped build resumes here).

    Example: tuneloom index update handbook -c tuneloom.yaml
    """
    quiet_libraries()
    from tuneloom.knowledge import update_index

    with user_errors():
        project = load(config)
        for kb in _names(project, name):
            _print_stats(update_index(project, kb, progress=not quiet, reembed=reembed), "updated")


def search(
    name: Annotated[str, typer.Argument(help="Knowledge base name.")],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    k: Annotated[int | None, typer.Option("-k", help="How many results (default: retrieval.top_k).", min=1)] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Access tags the caller holds (repeat); default: all.")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Metadata match KEY=VALUE (repeat).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The hits as a JSON list.")] = False,
) -> None:
    """Hybrid search (dense + keyword, fused) in a knowledge base, with access-tag and metadata filters.

    Example: tuneloom index search handbook "how long is the return window?" -k 3 --tag public
    """
    quiet_libraries()
    from tuneloom.knowledge import Filter, open_index

    pairs = [w.split("=", 1) for w in where or []]
    if any(len(p) != 2 for p in pairs):
        fail(ValueError(f"--where takes KEY=VALUE, got {where}"))
    flt = Filter(allowed_tags=frozenset(tag) if tag else None, where=dict(pairs))
    with user_errors():
        index = open_index(load(config), name)
        hits = index.search(query, k, flt)
    for note in index.notes:
        err.print(f"note: {note}", highlight=False)
    if as_json:
        out.print_json(json.dumps([hit.model_dump(mode="json") for hit in hits]))
        return
    table = Table(title=f"{name}: {len(hits)} results")
    for col in ("#", "score", "document", "section", "text"):
        table.add_column(col, overflow="fold")
    for i, hit in enumerate(hits, 1):
        text = hit.chunk.text if len(hit.chunk.text) <= 200 else hit.chunk.text[:200] + "..."
        table.add_row(str(i), f"{hit.score:.4f}", hit.chunk.chunk_id, " > ".join(hit.chunk.section), text)
    out.print(table)


def stats(name: NameArg = None, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Documents, chunks and tokens of a knowledge base's index, and the files skipped with their reasons.

    Example: tuneloom index stats handbook -c tuneloom.yaml
    """
    from tuneloom.knowledge import index_stats

    with user_errors():
        project = load(config)
        for kb in _names(project, name):
            _print_stats(index_stats(project, kb), "holds")


def _print_stats(stats: IndexStats, verb: str) -> None:
    out.print(
        f"[bold]{stats.knowledge_base}[/] {verb}: {stats.documents} documents, {stats.chunks} chunks, "
        f"{stats.tokens} tokens (version {stats.content_version})"
    )
    out.print(
        f"  last run: {stats.added} added, {stats.changed} changed, {stats.removed} removed, {stats.unchanged} unchanged; "
        f"{stats.embedded_chunks} chunks embedded in {stats.seconds:.1f} s"
    )
    if stats.skipped:
        table = Table(title=f"{len(stats.skipped)} skipped")
        table.add_column("document", overflow="fold")
        table.add_column("reason", overflow="fold")
        for s in stats.skipped:
            table.add_row(s.doc_id, s.reason)
        out.print(table)
    for warning in stats.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
