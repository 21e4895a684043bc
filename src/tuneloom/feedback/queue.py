"""The review queue: new feedback proposed as training rows, then accepted, edited or rejected by a person or a rule."""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, select

from tuneloom.config import Project, TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.feedback.guards import GuardSets, guard_sets
from tuneloom.feedback.models import ProposalSummary, QueueFilter, QueueItem, ReviewState
from tuneloom.feedback.rules import RuleBook
from tuneloom.feedback.store import NOT_APPLICABLE, STATES, ConcurrentChange, ReviewRow, now, open_store, session
from tuneloom.serve.feedback import CompletionRow, FeedbackRow, FeedbackStore
from tuneloom.tasks import kind_of
from tuneloom.tasks.base import FeedbackItem, FeedbackRows

Better = tuple[str, str]  # (a well-rated answer to the same prompt, its completion id)


def registry_name(task: TaskConfig) -> str:
    """The name the task's versions are registered and served under."""
    return task.registry_name or task.name


def feedback_item(
    task: TaskConfig, fb: FeedbackRow, c: CompletionRow, correction: str | None = None, better: str | None = None
) -> FeedbackItem:
    return FeedbackItem(
        feedback_id=fb.id,
        request=c.request,
        response=c.response,
        rating=fb.rating,
        rating_kind=fb.rating_kind,
        correction=correction if correction is not None else fb.correction,
        bad=fb.rating <= task.feedback.bad_rating_max,
        better_answer=better,
    )


def lineage(fb: FeedbackRow, c: CompletionRow) -> dict[str, Any]:
    """Where a row came from: the feedback, the answer, the version that gave it and what it retrieved."""
    response = c.response if isinstance(c.response, dict) else {}
    sources = response.get("sources", response.get("tuneloom_sources"))  # stored as `sources` by the chat route
    return {
        "feedback_id": fb.id,
        "completion_id": c.id,
        "model_version": c.served,
        "requested": c.model,
        "key_id": fb.key_id,
        "sources": sources or [],
    }


def convert(
    task: TaskConfig, fb: FeedbackRow, c: CompletionRow, correction: str | None = None, better: Better | None = None
) -> tuple[FeedbackRows, list[dict[str, Any]]]:
    """The kind's rows for one feedback item, each with an id, a source and its lineage."""
    item = feedback_item(task, fb, c, correction, better[0] if better else None)
    found = kind_of(task.type).feedback_rows(task, item)
    origin = lineage(fb, c)
    if better and not item.correction:
        origin["chosen_from"] = better[1]  # the well-rated answer that became `chosen`
    tagged = [
        {**row, "id": f"{task.name}-feedback-{fb.id}-{i}", "source": f"feedback:{fb.id}", "lineage": origin}
        for i, row in enumerate(found.rows)
    ]
    return found, tagged


def _prompt_key(request: Any) -> str | None:
    request = request if isinstance(request, dict) else {}
    prompt = request.get("messages", request.get("prompt"))
    return json.dumps(prompt, sort_keys=True) if prompt else None


def better_answers(s: Any, task: TaskConfig, new: list[Any]) -> dict[int, Better]:
    """For each bad, uncorrected new item: a well-rated (4-5) answer of the same model to the same prompt."""
    wanted = {
        key: fb.id
        for fb, c in new
        if fb.rating <= task.feedback.bad_rating_max and not fb.correction and (key := _prompt_key(c.request))
    }
    if not wanted:
        return {}
    good = (
        select(CompletionRow)
        .join(FeedbackRow, FeedbackRow.completion_id == CompletionRow.id)
        .where(CompletionRow.served.startswith(f"{registry_name(task)}:", autoescape=True), FeedbackRow.rating >= 4)
        .order_by(FeedbackRow.id)
    )
    found: dict[int, Better] = {}
    for c in s.scalars(good):
        key, choices = _prompt_key(c.request), (c.response or {}).get("choices")
        if key in wanted and wanted[key] not in found and isinstance(choices, list) and choices:
            found[wanted[key]] = (str(choices[0]), c.id)
    return found


def _flags(sets: GuardSets, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        verdict = sets.verdict(copy.deepcopy(row))
        if verdict is not None:
            out.append({"kind": verdict[0], **verdict[1]})
    return out


def _new_feedback(s: Any, task: TaskConfig) -> list[Any]:
    known = select(ReviewRow.feedback_id).where(ReviewRow.task == task.name)
    stmt = (
        select(FeedbackRow, CompletionRow)
        .join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
        .where(CompletionRow.served.startswith(f"{registry_name(task)}:", autoescape=True), FeedbackRow.id.not_in(known))
        .order_by(FeedbackRow.id)
    )
    return list(s.execute(stmt).all())


def _entry(task: TaskConfig, fb: FeedbackRow, c: CompletionRow, better: Better | None) -> tuple[ReviewRow, FeedbackRows]:
    found, rows = convert(task, fb, c, better=better)
    entry = ReviewRow(
        task=task.name,
        feedback_id=fb.id,
        completion_id=c.id,
        model_version=c.served,
        created=now(),
        state="pending",
        format=found.format,
        rows=rows,
        reason=found.reason,
        flags=[],
    )
    return entry, found


def _propose_once(store: FeedbackStore, project: Project, task: TaskConfig, sets: GuardSets) -> ProposalSummary:
    summary = ProposalSummary(task=task.name)
    rules = RuleBook(project, task)
    with session(store, write=True) as s:
        new = _new_feedback(s, task)
        better = better_answers(s, task, new)
        for fb, c in new:
            summary.examined += 1
            entry, found = _entry(task, fb, c, better.get(fb.id))
            summary.reasons[found.reason or found.format] = summary.reasons.get(found.reason or found.format, 0) + 1
            if not entry.rows and not found.needs_review:
                entry.state = NOT_APPLICABLE
                summary.not_applicable += 1
            else:
                summary.queued += 1
                summary.needs_correction += int(not entry.rows)
                summary.formats[found.format] = summary.formats.get(found.format, 0) + 1
                entry.flags = _flags(sets, entry.rows)
                summary.flagged += int(bool(entry.flags))
                rule = rules.match(fb.key_id, list(fb.tags or []), bool(fb.correction)) if entry.rows else None
                if rule is not None:
                    entry.state, entry.reviewer, entry.reviewed = "accepted", f"rule:{rule.name}", now()
                    summary.auto_accepted += 1
            s.add(entry)
    return summary


def propose(project: Project, task_name: str | None = None) -> ProposalSummary:
    """Put feedback on the task's model that is not in the queue yet into it (idempotent: never twice).

    Each item gets the kind's rows with lineage, advisory leak/duplicate flags, and is accepted at
    once when an auto-accept rule matches; bad answers without a correction wait for a reviewer.
    """
    task = project.config.task(task_name)
    store = open_store(project)
    try:
        with session(store) as s:
            if not _new_feedback(s, task):  # checked before indexing the test sets, and without the write lock
                return ProposalSummary(task=task.name)
        sets = guard_sets(project, task)  # file reading and hashing, outside the write transaction
        for _ in range(2):
            try:
                return _propose_once(store, project, task, sets)
            except ConcurrentChange:  # another proposer inserted some of the same feedback: see what is left
                sets = guard_sets(project, task)
        return _propose_once(store, project, task, sets)  # a third collision is reported
    finally:
        store.close()


def _queue_select(task: TaskConfig, flt: QueueFilter) -> Select[ReviewRow, FeedbackRow, CompletionRow]:
    stmt = (
        select(ReviewRow, FeedbackRow, CompletionRow)
        .join(FeedbackRow, ReviewRow.feedback_id == FeedbackRow.id)
        .join(CompletionRow, FeedbackRow.completion_id == CompletionRow.id)
        .where(ReviewRow.task == task.name, ReviewRow.state != NOT_APPLICABLE)
    )
    if flt.ids is not None:
        stmt = stmt.where(ReviewRow.id.in_(flt.ids))
    if flt.states is not None:
        stmt = stmt.where(ReviewRow.state.in_(flt.states))
    if flt.formats is not None:
        stmt = stmt.where(ReviewRow.format.in_(flt.formats))
    if flt.model_version is not None:
        stmt = stmt.where(ReviewRow.model_version == flt.model_version)
    if flt.unused:
        stmt = stmt.where(ReviewRow.used_version.is_(None))
    return stmt.order_by(ReviewRow.id)


def _keep(flt: QueueFilter, r: ReviewRow) -> bool:
    if flt.flagged is not None and bool(r.flags) != flt.flagged:
        return False
    return flt.with_rows is None or bool(r.rows) == flt.with_rows


def _text(request: Any) -> str:
    request = request or {}
    if isinstance(request.get("messages"), list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in request["messages"] if m.get("role") != "system")
    value = request.get("prompt", request.get("input", ""))
    return "\n".join(value) if isinstance(value, list) else str(value)


def _answer(response: Any) -> str | None:
    response = response or {}
    value = response.get("choices", response.get("labels"))
    if isinstance(value, list) and value:
        return str(value[0]) if "choices" in response else ", ".join(map(str, value))
    return None


def queue_item(r: ReviewRow, fb: FeedbackRow, c: CompletionRow) -> QueueItem:
    return QueueItem(
        id=r.id,
        task=r.task,
        feedback_id=r.feedback_id,
        completion_id=r.completion_id,
        model_version=r.model_version,
        created=r.created,
        state=r.state,
        format=r.format,
        rows=list(r.rows or []),
        reason=r.reason,
        prompt=_text(c.request),
        answer=_answer(c.response),
        correction=r.correction or fb.correction,
        rating=fb.rating,
        tags=list(fb.tags or []),
        flags=list(r.flags or []),
        reviewer=r.reviewer,
        reviewed=r.reviewed,
        note=r.note,
        guard=r.guard,
        used_version=r.used_version,
    )


def list_queue(project: Project, task_name: str | None = None, flt: QueueFilter | None = None) -> list[QueueItem]:
    """Queue items matching `flt` (default: every item not used yet), oldest first."""
    task, flt = project.config.task(task_name), flt or QueueFilter()
    store = open_store(project)
    try:
        with session(store) as s:
            found = [queue_item(r, fb, c) for r, fb, c in s.execute(_queue_select(task, flt)) if _keep(flt, r)]
    finally:
        store.close()
    return _page(flt, found)


def _page(flt: QueueFilter, found: list[Any]) -> list[Any]:
    end = None if flt.limit is None else flt.offset + flt.limit
    return found[flt.offset : end]


def _review(project: Project, task_name: str | None, flt: QueueFilter, state: str, reviewer: str, note: str | None) -> list[int]:
    """Set `state` on the matching items in one transaction; returns their ids."""
    task = project.config.task(task_name)
    if not reviewer.strip():
        raise TuneloomError("a review needs a reviewer name (--reviewer NAME)")
    store = open_store(project)
    try:
        with session(store, write=True) as s:
            found = _page(flt, [(r, fb, c) for r, fb, c in s.execute(_queue_select(task, flt)) if _keep(flt, r)])
            _check_requested(flt, found, state)
            changed = []
            for r, _fb, _c in found:
                if state == "accepted" and not r.rows:
                    continue  # a bad answer without a correction: nothing to accept until someone writes one
                _stamp(r, state, reviewer, note)
                changed.append(r.id)
            return changed
    finally:
        store.close()


def _check_requested(flt: QueueFilter, found: list[Any], state: str) -> None:
    """Items asked for by id must exist, be unused, and (to be accepted) have rows."""
    if flt.ids is None:
        return
    have = {r.id: r for r, _, _ in found}
    missing = sorted(set(flt.ids) - set(have))
    if missing:
        raise TuneloomError(f"no unused queue item with id {missing} in this task; `tuneloom feedback review --list` shows them")
    empty = sorted(i for i, r in have.items() if state == "accepted" and not r.rows)
    if empty:
        raise TuneloomError(
            f"queue item(s) {empty} have no training rows ({have[empty[0]].reason}): edit them with a correction, or reject them"
        )


def accept(project: Project, task_name: str | None, flt: QueueFilter, reviewer: str, note: str | None = None) -> list[int]:
    """Accept the matching items (bulk with a filter; items without rows are skipped unless asked for by id)."""
    return _review(project, task_name, flt, "accepted", reviewer, note)


def reject(project: Project, task_name: str | None, flt: QueueFilter, reviewer: str, note: str | None = None) -> list[int]:
    """Reject the matching items: they never enter training."""
    return _review(project, task_name, flt, "rejected", reviewer, note)


def _stamp(r: ReviewRow, state: str, reviewer: str, note: str | None) -> None:
    """A review decision: the guards run again on the item's rows at the next contribution."""
    r.state, r.reviewer, r.reviewed, r.note, r.guard, r.held_out = state, reviewer, now(), note, None, False


def _edited(task: TaskConfig, r: ReviewRow, fb: FeedbackRow, c: CompletionRow, correction: str) -> str | None:
    """Re-convert the item with the reviewer's correction; why it gives no row, or None after updating it."""
    if not correction.strip():
        return "an edit needs the corrected answer or label"
    converted, rows = convert(task, fb, c, correction)
    if not rows:
        return f"the correction gives no training row ({converted.reason})"
    r.rows, r.format, r.reason, r.correction = rows, converted.format, None, correction
    return None


def edit(
    project: Project, task_name: str | None, item_id: int, correction: str, reviewer: str, note: str | None = None
) -> QueueItem:
    """Replace an item's correction (an answer, or a label) and accept the rows made from it."""
    decide(project, task_name, [Decision(item=item_id, state="edited", correction=correction, note=note)], reviewer)
    return list_queue(project, task_name, QueueFilter(ids=[item_id]))[0]


class Decision(BaseModel):
    """One reviewer decision on a queue item (a line of a review file)."""

    item: int
    state: ReviewState
    correction: str | None = None  # for `edited`: the corrected answer or label
    note: str | None = None
    where: str = ""  # for messages: e.g. "review.csv line 4"


def decide(project: Project, task_name: str | None, decisions: list[Decision], reviewer: str) -> dict[str, int]:
    """Apply every decision in one transaction, or none: problems are collected and raised together."""
    task = project.config.task(task_name)
    if not reviewer.strip():
        raise TuneloomError("a review needs a reviewer name (--reviewer NAME)")
    store = open_store(project)
    try:
        with session(store, write=True) as s:
            wanted = QueueFilter(ids=[d.item for d in decisions])
            found = {r.id: (r, fb, c) for r, fb, c in s.execute(_queue_select(task, wanted))}
            problems, counts = [], dict.fromkeys(STATES, 0)
            for d in decisions:
                problem = _decide(task, found.get(d.item), d, reviewer)
                if problem:
                    problems.append(f"{d.where or f'item {d.item}'}: {problem}")
                else:
                    counts[d.state] += 1
            if problems:
                more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
                raise TuneloomError("nothing was changed:\n  " + "\n  ".join(problems[:20]) + more)
            return counts
    finally:
        store.close()


def _decide(
    task: TaskConfig, found: tuple[ReviewRow, FeedbackRow, CompletionRow] | None, d: Decision, reviewer: str
) -> str | None:
    if found is None:
        return f"column item: no unused queue item {d.item} in task '{task.name}'"
    r, fb, c = found
    if d.state == "pending":
        return None
    if d.state == "edited":
        problem = _edited(task, r, fb, c, d.correction or "")
        if problem:
            return f"column correction: {problem}"
    elif d.state == "accepted" and not r.rows:
        return f"column status: item {d.item} has no training rows ({r.reason}); write a correction and set status edited, or reject it"
    if (r.state, r.note) != (d.state, d.note) or d.state == "edited":
        _stamp(r, d.state, reviewer, d.note)
    return None
