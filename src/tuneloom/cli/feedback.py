"""`tuneloom feedback list | show | stats | review | accounting`: the feedback store and its review queue."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.prompt import Prompt
from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, load, out, user_errors
from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.config import Project
    from tuneloom.feedback import FeedbackQuery, QueueItem

TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Task name (default: the only task).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name that answered (registry name).")]
VersionOpt = Annotated[str | None, typer.Option("--version", help="Version of --model ('3'), or 'name:3'.")]
AliasOpt = Annotated[str | None, typer.Option("--alias", help="Only requests addressed to name@ALIAS.")]
MinOpt = Annotated[int | None, typer.Option("--min-rating", min=1, max=5, help="Lowest rating (thumbs down = 1, up = 5).")]
MaxOpt = Annotated[int | None, typer.Option("--max-rating", min=1, max=5, help="Highest rating.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Feedback carrying this tag (repeat for any of several).")]
SinceOpt = Annotated[dt.datetime | None, typer.Option("--since", help="From this time (ISO, UTC), e.g. 2026-12-01.")]
UntilOpt = Annotated[dt.datetime | None, typer.Option("--until", help="Before this time (ISO, UTC).")]
CorrOpt = Annotated[bool | None, typer.Option("--corrected/--uncorrected", help="Only feedback with (or without) a correction.")]
ReviewerOpt = Annotated[
    str | None, typer.Option("--reviewer", help="Your name, recorded with each decision (default: login name).")
]


def _query(
    model: str | None,
    version: str | None,
    alias: str | None,
    min_rating: int | None,
    max_rating: int | None,
    tag: list[str] | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    corrected: bool | None,
    limit: int | None = None,
) -> FeedbackQuery:
    """The CLI's filter options as a query (times without a zone are UTC)."""
    from tuneloom.feedback import FeedbackQuery

    return FeedbackQuery(
        model=model,
        version=version,
        alias=alias,
        min_rating=min_rating,
        max_rating=max_rating,
        tags=tag or [],
        since=since,
        until=until,
        has_correction=corrected,
        limit=limit,
    )


def _short(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def list_(
    model: ModelOpt = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    min_rating: MinOpt = None,
    max_rating: MaxOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    corrected: CorrOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N.")] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """List feedback on served answers (texts as stored: redacted when serve.redact is on).

    Example: tuneloom feedback list --model helpdesk-qa --max-rating 2 --corrected
    """
    from tuneloom.feedback import list_feedback

    with user_errors():
        rows = list_feedback(
            load(config), _query(model, version, alias, min_rating, max_rating, tag, since, until, corrected, limit)
        )
    if as_json:
        out.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    table = Table("id", "time", "served", "rating", "tags", "correction")
    for r in rows:
        rating = ("👍" if r.rating == 5 else "👎") if r.rating_kind == "thumbs" else str(r.rating)
        table.add_row(str(r.id), r.created.strftime("%Y-%m-%d %H:%M"), r.served, rating, ", ".join(r.tags), _short(r.correction))
    out.print(table)
    out.print(f"{len(rows)} feedback row(s); `tuneloom feedback show ID` prints one in full")


def show(
    feedback_id: Annotated[int, typer.Argument(help="Feedback id (from `tuneloom feedback list`).")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Print one feedback row with the request and the answer it rates.

    Example: tuneloom feedback show 42
    """
    from tuneloom.feedback import show_feedback

    with user_errors():
        view = show_feedback(load(config), feedback_id)
    out.print_json(view.model_dump_json())


def stats(
    model: ModelOpt = None,
    version: VersionOpt = None,
    alias: AliasOpt = None,
    min_rating: MinOpt = None,
    max_rating: MaxOpt = None,
    tag: TagOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    corrected: CorrOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Per served version: answers, feedback, share rated, mean rating, thumbs-up rate (95% interval), latency.

    Example: tuneloom feedback stats --model helpdesk-qa --since 2026-12-01
    """
    from tuneloom.feedback import feedback_stats

    with user_errors():
        found = feedback_stats(load(config), _query(model, version, alias, min_rating, max_rating, tag, since, until, corrected))
    if as_json:
        out.print_json(json.dumps([s.model_dump(mode="json") for s in found]))
        return
    table = Table("version", "answers", "feedback", "rated", "mean", "thumbs up (95% CI)", "corrections", "p50 ms", "p95 ms")
    for s in found:
        up = s.thumbs_up_rate
        rate = f"{up.value:.0%} [{up.low:.0%}, {up.high:.0%}]" if up else "-"
        mean = f"{s.mean_rating:.2f}" if s.mean_rating is not None else "-"
        p50, p95 = (f"{v:.0f}" if v is not None else "-" for v in (s.latency_p50_ms, s.latency_p95_ms))
        table.add_row(
            s.served, str(s.completions), str(s.feedback), f"{s.share_rated:.0%}", mean, rate, str(s.corrections), p50, p95
        )
    out.print(table)


def _show_item(item: QueueItem, n: int, total: int) -> None:
    out.rule(f"item {item.id} ({n}/{total}) · {item.model_version} · rating {item.rating} · {item.format}")
    out.print(f"[bold]prompt[/]\n{item.prompt}", highlight=False)
    out.print(f"[bold]model answered[/]\n{item.answer or '-'}", highlight=False)
    out.print(f"[bold]correction[/]\n{item.correction or '[yellow](none: write one with e, or reject)[/]'}", highlight=False)
    for flag in item.flags:
        out.print(f"[red]⚠ {flag['kind']}[/] of {flag.get('of')} (similarity {flag.get('similarity')})")


def _interactive(project: Project, task: str | None, reviewer: str) -> None:
    from tuneloom.feedback import QueueFilter, accept, edit, list_queue, reject

    items = list_queue(project, task, QueueFilter(states=["pending"]))
    if not items:
        out.print("nothing waits for review")
        return
    for n, item in enumerate(items, 1):
        _show_item(item, n, len(items))
        choices = ["a", "e", "r", "s", "q"] if item.rows else ["e", "r", "s", "q"]
        choice = Prompt.ask("[a]ccept, [e]dit, [r]eject, [s]kip, [q]uit", choices=choices, default="s", console=out)
        if choice == "q":
            break
        if choice == "a":
            accept(project, task, QueueFilter(ids=[item.id]), reviewer)
        elif choice == "r":
            reject(
                project,
                task,
                QueueFilter(ids=[item.id]),
                reviewer,
                Prompt.ask("note (optional)", default="", console=out) or None,
            )
        elif choice == "e":
            edit(project, task, item.id, Prompt.ask("corrected answer or label", console=out), reviewer)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no USER variable and no password-file entry (some containers)
        raise TuneloomError("no login name to record as the reviewer: give --reviewer NAME") from None


def _print_queue(project: Project, task: str | None) -> None:
    from tuneloom.feedback import list_queue

    table = Table("item", "state", "format", "version", "rating", "flags", "reviewer", "prompt")
    for i in list_queue(project, task):
        flags = ", ".join(f["kind"] for f in i.flags)
        table.add_row(str(i.id), i.state, i.format, i.model_version, str(i.rating), flags, i.reviewer or "", _short(i.prompt, 50))
    out.print(table)


def review(
    task: TaskOpt = None,
    reviewer: ReviewerOpt = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write pending items to a CSV file to review in a spreadsheet.")
    ] = None,
    import_: Annotated[Path | None, typer.Option("--import", help="Apply a reviewed CSV file (all lines or none).")] = None,
    accept_all: Annotated[
        bool, typer.Option("--accept-all", help="Accept every pending item that has rows and no flag.")
    ] = False,
    list_only: Annotated[bool, typer.Option("--list", help="Only show the queue (items not used yet).")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Queue new feedback as training rows (auto-accept rules apply), then review it in the terminal or a spreadsheet.

    Example: tuneloom feedback review -t helpdesk-qa --export review.csv
    """
    from tuneloom.feedback import QueueFilter, accept, propose
    from tuneloom.feedback.review_file import export_review, import_review

    with user_errors():
        name = reviewer or _login()
        project = load(config)
        s = propose(project, task)
        out.print(
            f"queued {s.queued} new item(s): {s.auto_accepted} auto-accepted, {s.needs_correction} without a correction, "
            f"{s.flagged} flagged; {s.not_applicable} not applicable"
        )
        if list_only:
            _print_queue(project, task)
        elif export is not None:
            n = export_review(project, task, export)
            out.print(f"wrote {n} pending item(s) to {export}; edit `status`/`correction`, then --import it")
        elif import_ is not None:
            counts = import_review(project, task, import_, name)
            out.print("imported: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        elif accept_all:
            ids = accept(project, task, QueueFilter(states=["pending"], flagged=False, with_rows=True), name)
            out.print(f"accepted {len(ids)} item(s)")
        else:
            _interactive(project, task, name)
        _print_accounting(project, task)


def _print_accounting(project: Project, task: str | None) -> None:
    from tuneloom.feedback import accounting as accounting_of

    acc = accounting_of(project, task)
    mark = "[green]✓[/]" if acc.holds else "[red]✗ does not add up[/]"
    out.print(f"{mark} {acc.equation()}", highlight=False)
    out.print(
        f"  rejected by the data guards {acc.rejected_by_guards}; used by a model version {acc.used}; available {acc.available}; not applicable {acc.not_applicable}"
    )


def accounting(task: TaskOpt = None, as_json: JsonOpt = False, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Where every piece of feedback went: feedback in = accepted + edited + rejected + pending + duplicates + leaked.

    Example: tuneloom feedback accounting -t helpdesk-qa
    """
    from tuneloom.feedback import accounting as accounting_of

    with user_errors():
        project = load(config)
        if as_json:
            out.print_json(accounting_of(project, task).model_dump_json())
            return
        _print_accounting(project, task)
