"""The spreadsheet round trip: export with a status column, edit, import back with validation naming line and column."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import CHAT_TASK
from tests.feedback.conftest import chat_answer, open_store, rate
from tuneloom import feedback
from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.feedback import QueueFilter
from tuneloom.feedback.review_file import export_review, import_review


def queued(project: Project) -> list[int]:
    store = open_store(project)
    ids = [
        rate(
            store,
            chat_answer(store, "Can I mount the Acme camera upside down?", "No."),
            "down",
            "Yes; flip the image in the app.",
        ),
        rate(store, chat_answer(store, '=HYPERLINK("http://x") how do I pair?', "Unsure."), "down"),
        rate(store, chat_answer(store, "Does the Acme lock have a key?", "Yes."), "down", "Yes, two spare keys come in the box."),
    ]
    store.close()
    feedback.propose(project, CHAT_TASK)
    return ids


def read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_export_edit_import_round_trip(project: Project, tmp_path: Path) -> None:
    queued(project)
    path = tmp_path / "review.csv"
    assert export_review(project, CHAT_TASK, path) == 3
    rows = read(path)
    assert [r["status"] for r in rows] == ["pending"] * 3
    rows[0]["status"], rows[0]["note"] = "accepted", "checked with the manual"
    rows[1]["status"], rows[1]["correction"] = "edited", "=Hold the pair button for 5 s."
    rows[2]["status"] = "rejected"
    write(path, rows)
    assert import_review(project, CHAT_TASK, path, reviewer="ana") == {"pending": 0, "accepted": 1, "edited": 1, "rejected": 1}
    items = {i.id: i for i in feedback.list_queue(project, CHAT_TASK)}
    first, second, third = (items[int(r["item"])] for r in rows)
    assert (first.state, first.note, first.reviewer) == ("accepted", "checked with the manual", "ana")
    assert second.state == "edited" and second.rows[0]["messages"][-1]["content"] == "=Hold the pair button for 5 s."
    assert third.state == "rejected"
    again = tmp_path / "again.csv"
    export_review(project, CHAT_TASK, again, QueueFilter(states=["edited"]))
    assert read(again)[0]["correction"] == "'=Hold the pair button for 5 s."  # no formula runs in a spreadsheet


def test_import_names_line_and_column_and_changes_nothing(project: Project, tmp_path: Path) -> None:
    queued(project)
    path = tmp_path / "review.csv"
    export_review(project, CHAT_TASK, path)
    rows = read(path)
    rows[0]["status"] = "approved"
    rows[1]["status"] = "accepted"  # no correction: nothing to accept
    rows[2]["item"] = "x7"
    write(path, rows)
    with pytest.raises(TuneloomError) as err:
        import_review(project, CHAT_TASK, path, reviewer="ana")
    message = str(err.value)
    assert "review.csv line 2, column status: 'approved' is not one of pending, accepted, edited, rejected" in message
    assert "review.csv line 4, column item: 'x7'" in message
    rows[0]["status"], rows[2]["item"] = "accepted", read(path)[2]["item"]
    rows[2]["item"] = str(int(rows[0]["item"]) + 2)
    write(path, rows)
    with pytest.raises(TuneloomError, match="review.csv line 3: column status: item .* has no training rows"):
        import_review(project, CHAT_TASK, path, reviewer="ana")
    assert {i.state for i in feedback.list_queue(project, CHAT_TASK)} == {"pending"}  # all or nothing
    (tmp_path / "bad.csv").write_text("id,state\n1,accepted\n", encoding="utf-8")
    with pytest.raises(TuneloomError, match="bad.csv line 1: missing column"):
        import_review(project, CHAT_TASK, tmp_path / "bad.csv", reviewer="ana")
