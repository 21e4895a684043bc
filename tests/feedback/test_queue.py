"""Proposing feedback to the review queue, reviewing it, the guards, contribution, mark_used and the accounting
(SQLite, and PostgreSQL when TUNELOOM_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import CHAT_TASK, CLS_TASK
from tests.feedback.conftest import chat_answer, classify_answer, make_project, open_store, rate
from tuneloom import feedback
from tuneloom.artifacts import read_feedback_record, read_manifest
from tuneloom.atomic import read_jsonl
from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.feedback import QueueFilter
from tuneloom.serve.auth import KeyStore, keys_path


def split_rows(project: Project, task: str, split: str) -> list[dict]:
    root = project.workspace / "datasets" / task
    return read_jsonl(root / (root / "LATEST").read_text().strip() / f"{split}.jsonl")


def turn(row: dict, role: str) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == role)


def test_propose_is_idempotent_applies_rules_and_keeps_lineage(project: Project) -> None:
    lead, _ = KeyStore(keys_path(project.workspace)).create(["*"], name="support-leads")
    store = open_store(project)
    sources = [{"document": "manual.pdf", "chunk": 3}]
    a = chat_answer(store, "Can I pay the Acme hub in instalments?", "No.", sources=sources)  # as the chat route stores them
    b = chat_answer(store, "Does the Acme doorbell work offline?", "Never.")
    c = chat_answer(store, "Is there a student discount on cameras?", "Maybe.")
    f_lead = rate(store, a, "down", "Yes, in three monthly instalments.", key=lead.id)
    f_tag = rate(store, b, 2, "It records to its SD card when offline.", tags=["reviewed"])
    f_bad = rate(store, c, "down")
    f_up = rate(store, c, "up")  # nothing to teach an SFT task: not applicable
    other = classify_answer(store, ["Invoice missing"], ["shipping"])
    rate(store, other, "down", "billing")
    store.close()

    first = feedback.propose(project, CHAT_TASK)
    assert (first.examined, first.queued, first.auto_accepted) == (4, 3, 2)
    assert (first.needs_correction, first.not_applicable) == (1, 1)
    again = feedback.propose(project, CHAT_TASK)
    assert (again.examined, again.queued) == (0, 0)  # never twice
    items = {i.feedback_id: i for i in feedback.list_queue(project, CHAT_TASK)}
    assert set(items) == {f_lead, f_tag, f_bad} and f_up not in items
    assert items[f_lead].state == "accepted" and items[f_lead].reviewer == "rule:trusted"
    assert items[f_tag].state == "accepted" and items[f_bad].state == "pending" and items[f_bad].rows == []
    row = items[f_lead].rows[0]
    assert row["lineage"] == {
        "feedback_id": f_lead,
        "completion_id": a,
        "model_version": f"{CHAT_TASK}:1",
        "requested": f"{CHAT_TASK}@production",
        "key_id": lead.id,
        "sources": sources,
    }
    assert row["messages"][-1] == {"role": "assistant", "content": "Yes, in three monthly instalments."}
    assert feedback.propose(project, CLS_TASK).queued == 1  # each task sees only its own model's feedback


def test_review_bulk_accept_edit_reject_and_the_accounting(project: Project) -> None:
    store = open_store(project)
    ids = []
    for i, q in enumerate(
        ["Where is the reset pin on the Acme hub?", "Can I return an opened Acme lock?", "How long is the camera warranty?"]
    ):
        ids.append(rate(store, chat_answer(store, q, "I do not know."), "down", f"Answer number {i} is the right one here."))
    bare = rate(store, chat_answer(store, "Does the Acme siren need batteries?", "Maybe."), "down")
    store.close()
    feedback.propose(project, CHAT_TASK)
    queue = {i.feedback_id: i for i in feedback.list_queue(project, CHAT_TASK)}
    accepted = feedback.accept(project, CHAT_TASK, QueueFilter(states=["pending"]), reviewer="ana")
    assert sorted(accepted) == sorted(queue[f].id for f in ids)  # the item without rows is skipped in bulk
    with pytest.raises(TuneloomError, match="no training rows .*needs_correction"):
        feedback.accept(project, CHAT_TASK, QueueFilter(ids=[queue[bare].id]), reviewer="ana")
    edited = feedback.edit(project, CHAT_TASK, queue[bare].id, "Yes, four AA batteries.", reviewer="ana")
    assert edited.state == "edited" and edited.rows[0]["messages"][-1]["content"] == "Yes, four AA batteries."
    feedback.reject(project, CHAT_TASK, QueueFilter(ids=[queue[ids[0]].id]), reviewer="bo", note="wrong product")
    with pytest.raises(TuneloomError, match="reviewer"):
        feedback.reject(project, CHAT_TASK, QueueFilter(ids=[queue[ids[1]].id]), reviewer=" ")
    acc = feedback.accounting(project, CHAT_TASK)
    assert (acc.feedback_in, acc.accepted, acc.edited, acc.rejected, acc.pending) == (4, 2, 1, 1, 0)
    assert acc.holds and acc.equation().startswith("feedback in 4 = accepted 2 + edited 1 + rejected 1")
    page = feedback.list_queue(project, CHAT_TASK, QueueFilter(offset=1, limit=2))
    assert [i.id for i in page] == [i.id for i in feedback.list_queue(project, CHAT_TASK)][1:3]
    rejected = feedback.list_queue(project, CHAT_TASK, QueueFilter(states=["rejected"]))
    assert [(i.reviewer, i.note) for i in rejected] == [("bo", "wrong product")]


def test_guards_keep_leaks_and_duplicates_out_and_contribution_is_a_dataset_version(
    tmp_path: Path, store_url: str | None
) -> None:
    project = make_project(tmp_path, store_url, redact=True, leak_threshold=0.5)
    test_row, train_row = split_rows(project, CHAT_TASK, "test")[0], split_rows(project, CHAT_TASK, "train")[0]
    store = open_store(project)
    leak = rate(store, chat_answer(store, turn(test_row, "user"), "Wrong."), "down", turn(test_row, "assistant"), ["reviewed"])
    near = rate(
        store, chat_answer(store, turn(test_row, "user") + " Thanks!", "Wrong."), "down", "Something else entirely.", ["reviewed"]
    )
    dup = rate(store, chat_answer(store, turn(train_row, "user"), "Wrong."), "down", turn(train_row, "assistant"), ["reviewed"])
    good = []
    for i in range(6):
        q = f"Question {i}: does the Acme thermostat model T{i} support a weekly schedule with {i + 2} slots?"
        good.append(
            rate(
                store,
                chat_answer(store, q, "No."),
                "down",
                f"Yes, model T{i} keeps {i + 2} slots a day. Mail me at ana{i}@example.com",
                ["reviewed"],
            )
        )
    twin = rate(
        store,
        chat_answer(store, "Question 0: does the Acme thermostat model T0 support a weekly schedule with 2 slots?", "No."),
        "down",
        "Yes, model T0 keeps 2 slots a day. Mail me at ana0@example.com",
        ["reviewed"],
    )
    junk = rate(store, chat_answer(store, "What does the display show?", "Nothing."), "down", "\u200b\u200b ", ["reviewed"])
    store.close()
    proposed = feedback.propose(project, CHAT_TASK)
    assert proposed.auto_accepted == 11 and proposed.flagged >= 3
    flags = {i.feedback_id: i.flags for i in feedback.list_queue(project, CHAT_TASK)}
    assert flags[leak][0]["kind"] == "leaked" and flags[dup][0]["kind"] == "duplicate" and flags[good[1]] == []

    out = feedback.contribution(project, CHAT_TASK)
    assert out.excluded == {"leaked": [leak, near], "duplicate": [dup, twin], "invalid": [junk]}
    assert sorted(out.feedback_ids + out.held_out_ids) == good and len(out.held_out_ids) == 1  # held_out 0.2 of 6
    assert all(
        "@example.com" not in json.dumps(r) and "<EMAIL_1>" in json.dumps(r) for r in out.rows + out.held_out
    )  # data.redact
    folder = Path(out.path)
    assert folder.name == f"feedback-{out.version}" and folder.parent.name == CHAT_TASK
    manifest, record = read_manifest(folder), read_feedback_record(folder)
    assert manifest.result.counts == {"train": 5, "test": 1} and manifest.task_type == "chat_sft"
    assert (
        record.feedback_ids == out.feedback_ids
        and [x["feedback_id"] for x in record.lineage] == out.feedback_ids + out.held_out_ids
    )
    assert read_jsonl(folder / "train.jsonl") == out.rows and read_jsonl(folder / "test.jsonl") == out.held_out
    assert feedback.contribution(project, CHAT_TASK).reused  # same rows, same version

    acc = feedback.accounting(project, CHAT_TASK)
    assert (acc.feedback_in, acc.accepted, acc.duplicates, acc.leaked, acc.rejected, acc.rejected_by_guards) == (
        11,
        6,
        2,
        2,
        1,
        1,
    )
    assert acc.holds

    assert feedback.mark_used(project, CHAT_TASK, out.feedback_ids + out.held_out_ids, f"{CHAT_TASK}:2") == 6
    assert feedback.mark_used(project, CHAT_TASK, out.feedback_ids, f"{CHAT_TASK}:2") == 0  # same version: no-op
    with pytest.raises(TuneloomError, match="already used by"):
        feedback.mark_used(project, CHAT_TASK, out.feedback_ids, f"{CHAT_TASK}:3")
    with pytest.raises(TuneloomError, match=f"{leak}: accepted, guards leaked"):
        feedback.mark_used(project, CHAT_TASK, [leak], f"{CHAT_TASK}:3")
    with pytest.raises(TuneloomError, match="must be"):
        feedback.mark_used(project, CHAT_TASK, out.feedback_ids, "2")
    later = feedback.contribution(project, CHAT_TASK)
    assert later.empty and later.feedback_ids == []  # no row is offered twice
    acc = feedback.accounting(project, CHAT_TASK)
    assert (acc.used, acc.available) == (6, 0) and acc.holds


def test_mark_used_is_all_or_nothing(project: Project) -> None:
    store = open_store(project)
    ok = rate(
        store,
        chat_answer(store, "Can the Acme lock be opened with a code?", "No."),
        "down",
        "Yes, with a six-digit code.",
        ["reviewed"],
    )
    pending = rate(store, chat_answer(store, "Does the hub speak Zigbee?", "No."), "down", "Yes, Zigbee 3.0.")
    store.close()
    feedback.propose(project, CHAT_TASK)
    feedback.contribution(project, CHAT_TASK)
    with pytest.raises(TuneloomError, match=f"{pending}: pending") as err:
        feedback.mark_used(project, CHAT_TASK, [ok, pending, 99999], f"{CHAT_TASK}:2")
    assert "99999: not in the review queue" in str(err.value)
    assert feedback.accounting(project, CHAT_TASK).used == 0  # nothing changed


def test_classification_feedback_guards_unknown_labels(project: Project) -> None:
    store = open_store(project)
    fine = rate(
        store,
        classify_answer(store, ["The courier left my parcel at the wrong house again"], ["billing"]),
        "down",
        "shipping",
        ["reviewed"],
    )
    odd = rate(
        store, classify_answer(store, ["Please delete my account and all my data"], ["billing"]), "down", "privacy", ["reviewed"]
    )
    store.close()
    feedback.propose(project, CLS_TASK)
    out = feedback.contribution(project, CLS_TASK)
    assert out.excluded == {"invalid": [odd]} and out.format == "label"
    assert [r["label"] for r in out.rows + out.held_out] == ["shipping"] and (out.feedback_ids + out.held_out_ids) == [fine]
    item = feedback.list_queue(project, CLS_TASK, QueueFilter(ids=None, states=["accepted"]))
    assert {i.feedback_id: i.guard for i in item} == {fine: "passed", odd: "invalid"}


def test_two_proposers_at_once_queue_each_feedback_once(project: Project) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(project)
    for i in range(20):
        rate(store, chat_answer(store, f"Question {i} about the Acme hub firmware?", "No."), "down", f"Answer {i}: update it.")
    store.close()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: feedback.propose(project, CHAT_TASK), range(2)))
    assert sum(r.queued for r in results) == 20
    assert len(feedback.list_queue(project, CHAT_TASK)) == 20 and feedback.accounting(project, CHAT_TASK).feedback_in == 20


def test_a_bad_answer_finds_a_well_rated_answer_to_the_same_prompt(project: Project) -> None:
    from tuneloom.feedback.queue import better_answers
    from tuneloom.feedback.store import session

    store = open_store(project)
    good = chat_answer(store, "How do I reset the hub?", "Hold the reset pin for 10 s.")
    rate(store, good, "up")
    bad = rate(store, chat_answer(store, "How do I reset the hub?", "Unplug it."), "down")
    lonely = rate(store, chat_answer(store, "How do I pair the lock?", "No idea."), "down")
    with session(store) as s:
        from tuneloom.serve.feedback import CompletionRow, FeedbackRow

        new = list(s.execute(select(FeedbackRow, CompletionRow).join(CompletionRow)).all())
        found = better_answers(s, project.config.task(CHAT_TASK), new)
    store.close()
    assert found == {bad: ("Hold the reset pin for 10 s.", good)} and lonely not in found


def test_golden_sets_and_held_out_feedback_are_guarded_too(tmp_path: Path, store_url: str | None) -> None:
    from tests.conftest import write_jsonl
    from tuneloom.errors import DataError

    golden = tmp_path / "golden" / "qa"
    golden.mkdir(parents=True)
    question = "Which courier does Acme use for parcels sent to Norway in winter?"
    write_jsonl(
        golden / "test.jsonl",
        [{"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Posten."}]}],
    )
    project = make_project(tmp_path, store_url, golden_sets=["golden/qa"], held_out=0.5)
    store = open_store(project)
    leak = rate(store, chat_answer(store, question, "DHL."), "down", "Posten Norge.", ["reviewed"])
    same = "Can the Acme garage opener be controlled from two phones at the same time?"
    twins = [
        rate(store, chat_answer(store, same, "No."), "down", f"Yes, share it from the app ({i}).", ["reviewed"]) for i in range(2)
    ]
    store.close()
    feedback.propose(project, CHAT_TASK)
    out = feedback.contribution(project, CHAT_TASK)
    assert leak in out.excluded["leaked"]
    assert len(out.held_out_ids) == 1 and out.excluded["leaked"] == sorted([leak, *(set(twins) - set(out.held_out_ids))])
    broken = make_project(tmp_path / "other", store_url, golden_sets=["golden/missing"])
    with pytest.raises(DataError, match="golden_sets: golden/missing has no test.jsonl"):
        feedback.contribution(broken, CHAT_TASK)
