"""Reading feedback: filters, one row in full, stats per version with the Wilson interval; the CLI over them;
a locked feedback database gives a clear message."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK
from tests.feedback.conftest import chat_answer, open_store, rate
from tuneloom import feedback
from tuneloom.cli import app
from tuneloom.config import Project
from tuneloom.feedback import FeedbackDatabaseError, FeedbackQuery, wilson_interval

runner = CliRunner()


def seed(project: Project) -> dict[str, int]:
    store = open_store(project)
    ids = {
        "v1_down": rate(store, chat_answer(store, "q1", "a1"), "down", "better one", ["wrong"]),
        "v1_up": rate(store, chat_answer(store, "q2", "a2"), "up"),
        "v2_up": rate(store, chat_answer(store, "q3", "a3", version=2), "up", None, ["praise"]),
        "v2_three": rate(store, chat_answer(store, "q4", "a4", version=2), 3),
    }
    chat_answer(store, "q5", "unrated", version=2)
    store.close()
    return ids


def test_wilson_interval_matches_the_textbook_values() -> None:
    got = wilson_interval(8, 10)
    assert got.value == 0.8 and round(got.low, 4) == 0.4902 and round(got.high, 4) == 0.9433
    assert wilson_interval(0, 5).low == 0.0 and wilson_interval(5, 5).high == 1.0
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_filters_and_stats(project: Project) -> None:
    ids = seed(project)

    def found(**q: object) -> list[int]:
        return [f.id for f in feedback.list_feedback(project, FeedbackQuery(**q))]

    assert found() == list(ids.values())
    assert found(model=CHAT_TASK, version="2") == [ids["v2_up"], ids["v2_three"]]
    assert found(version=f"{CHAT_TASK}:1", max_rating=2) == [ids["v1_down"]]
    assert found(alias=f"{CHAT_TASK}@production", min_rating=5) == [ids["v1_up"], ids["v2_up"]]
    assert found(alias="canary") == []
    assert found(tags=["praise", "wrong"]) == [ids["v1_down"], ids["v2_up"]]
    assert found(has_correction=True) == [ids["v1_down"]] and len(found(has_correction=False)) == 3
    assert found(until=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)) == [] and found(limit=1) == [ids["v1_down"]]
    an_hour_east = dt.timezone(dt.timedelta(hours=1))
    assert len(found(since=dt.datetime.now(an_hour_east) - dt.timedelta(minutes=30))) == 4  # zones are converted
    full = feedback.show_feedback(project, ids["v1_down"])
    assert full.request["messages"][0]["content"] == "q1" and full.response == {"choices": ["a1"]}
    by_version = {s.served: s for s in feedback.feedback_stats(project, FeedbackQuery(model=CHAT_TASK))}
    v1, v2 = by_version[f"{CHAT_TASK}:1"], by_version[f"{CHAT_TASK}:2"]
    assert (v1.completions, v1.feedback, v1.share_rated, v1.mean_rating, v1.corrections) == (2, 2, 1.0, 3.0, 1)
    assert (v2.completions, v2.feedback, round(v2.share_rated, 3), v2.mean_rating) == (3, 2, 0.667, 4.0)
    assert v2.thumbs_up_rate is not None and v2.thumbs_up_rate.value == 0.5 and v2.latency_p50_ms == 200.0


def test_cli_list_show_stats_and_review_round_trip(project: Project, tmp_path) -> None:
    ids = seed(project)
    config = str(project.path)
    listed = runner.invoke(app, ["feedback", "list", "-c", config, "--max-rating", "2", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)] == [ids["v1_down"]]
    shown = runner.invoke(app, ["feedback", "show", str(ids["v1_up"]), "-c", config])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["rating"] == 5
    missing = runner.invoke(app, ["feedback", "show", "999", "-c", config])
    assert missing.exit_code == 2 and "no feedback with id 999" in missing.output
    table = runner.invoke(app, ["feedback", "stats", "-c", config, "--model", CHAT_TASK])
    assert table.exit_code == 0 and f"{CHAT_TASK}:2" in table.stdout and "50% [" in table.stdout
    path = tmp_path / "review.csv"
    exported = runner.invoke(app, ["feedback", "review", "-t", CHAT_TASK, "-c", config, "--export", str(path)])
    assert exported.exit_code == 0, exported.output
    assert "wrote 1 pending item(s)" in exported.stdout and "feedback in 1 = accepted 0" in exported.stdout
    path.write_text(path.read_text(encoding="utf-8-sig").replace(",pending,", ",accepted,"), encoding="utf-8")
    imported = runner.invoke(
        app, ["feedback", "review", "-t", CHAT_TASK, "-c", config, "--import", str(path), "--reviewer", "ana"]
    )
    assert imported.exit_code == 0, imported.output
    assert "accepted 1" in imported.stdout and "✓ feedback in 1 = accepted 1" in imported.stdout
    queue = runner.invoke(app, ["feedback", "review", "-t", CHAT_TASK, "-c", config, "--list"])
    assert queue.exit_code == 0 and "accepted" in queue.stdout and "user: q1" in queue.stdout
    acc = runner.invoke(app, ["feedback", "accounting", "-t", CHAT_TASK, "-c", config, "--json"])
    assert json.loads(acc.stdout)["accepted"] == 1


def test_interactive_review_accepts_edits_and_rejects(project: Project) -> None:
    store = open_store(project)
    for q in ("Is the Acme hub waterproof?", "Does the lock beep?", "Can I share camera access?"):
        rate(store, chat_answer(store, q, "No."), "down", f"Corrected answer about: {q}")
    rate(store, chat_answer(store, "Is there an app for tablets?", "No."), "down")
    store.close()
    answers = "a\ne\nYes, in the app settings.\nr\nwrong product\ns\n"
    result = runner.invoke(
        app, ["feedback", "review", "-t", CHAT_TASK, "-c", str(project.path), "--reviewer", "bo"], input=answers
    )
    assert result.exit_code == 0, result.output
    states = sorted(i.state for i in feedback.list_queue(project, CHAT_TASK))
    assert states == ["accepted", "edited", "pending", "rejected"]
    assert "feedback in 4 = accepted 1 + edited 1 + rejected 1 + pending 1" in result.stdout


def test_locked_database_gives_a_clear_error(tmp_path) -> None:
    from tests.feedback.conftest import make_project

    project = make_project(tmp_path, None)
    seed(project)
    con = sqlite3.connect(project.workspace / "serve" / "feedback.db", timeout=0)
    con.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(FeedbackDatabaseError, match="is locked by another writer .*nothing was changed"):
            feedback.propose(project, CHAT_TASK)
    finally:
        con.rollback()
        con.close()
    assert feedback.propose(project, CHAT_TASK).queued == 1


def test_unreachable_database_gives_a_clear_error(tmp_path) -> None:
    from tests.feedback.conftest import make_project

    project = make_project(tmp_path, "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")  # nothing listens on port 1
    with pytest.raises(FeedbackDatabaseError) as err:
        feedback.accounting(project, CHAT_TASK)
    assert "secret" not in str(err.value) and "127.0.0.1:1" in str(err.value)
