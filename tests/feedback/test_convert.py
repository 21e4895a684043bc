"""Each task kind's conversion of a rated answer: SFT, DPO pair, KTO, labels; kinds that do not convert say so."""

from __future__ import annotations

import json

from tests.conftest import CHAT_TASK, CLS_TASK
from tuneloom.config import TaskConfig, load_project
from tuneloom.tasks import kind_of
from tuneloom.tasks.base import FeedbackItem

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I reset the hub?"}]}


def item(
    rating: int = 1, correction: str | None = None, request: dict | None = None, response: dict | None = None
) -> FeedbackItem:
    return FeedbackItem(
        feedback_id=7,
        request=CHAT if request is None else request,
        response={"choices": ["Unplug it forever."]} if response is None else response,
        rating=rating,
        rating_kind="thumbs",
        correction=correction,
        bad=rating <= 2,
    )


def tasks(data_project_dir) -> dict[str, TaskConfig]:
    return {t.name: t for t in load_project(data_project_dir / "tuneloom.yaml").config.tasks}


def as_type(task: TaskConfig, type_: str, **train: object) -> TaskConfig:
    data = {"sources": [{"path": "x.jsonl"}], "columns": {"prompt": "q", "chosen": "c", "rejected": "r"}}
    if type_ == "ner":
        data["columns"] = {"text": "t", "entities": "e"}
    return TaskConfig.model_validate({"name": "t", "type": type_, "model": task.model, "data": data, "train": train})


def test_chat_sft_correction_is_an_sft_example_and_a_bare_thumbs_down_waits_for_review(data_project_dir) -> None:
    task = tasks(data_project_dir)[CHAT_TASK]
    kind = kind_of(task.type)
    found = kind.feedback_rows(task, item(correction="Hold the button for 10 s."))
    assert found.format == "sft"
    assert found.rows == [{"messages": [*CHAT["messages"], {"role": "assistant", "content": "Hold the button for 10 s."}]}]
    bare = kind.feedback_rows(task, item())
    assert (bare.rows, bare.reason, bare.needs_review) == ([], "needs_correction", True)
    up = kind.feedback_rows(task, item(rating=5))
    assert (up.rows, up.needs_review) == ([], False) and up.reason == "no_correction_for_sft"
    no_prompt = kind.feedback_rows(task, FeedbackItem(1, None, None, 1, "thumbs", "fixed", True))
    assert no_prompt.reason == "no_stored_prompt"  # serve.store_prompts was off


def test_chat_sft_adds_the_task_system_prompt_to_a_prompt_without_one(data_project_dir) -> None:
    task = tasks(data_project_dir)[CHAT_TASK]
    found = kind_of(task.type).feedback_rows(task, item(correction="Yes.", request={"prompt": "Is it waterproof?"}))
    assert found.rows[0]["messages"][0] == {"role": "system", "content": task.data.system_prompt}
    assert found.rows[0]["messages"][1] == {"role": "user", "content": "Is it waterproof?"}


def test_preference_correction_is_a_dpo_pair_and_thumbs_are_kto_rows_with_kto_loss(data_project_dir) -> None:
    base = tasks(data_project_dir)[CHAT_TASK]
    dpo, kto = as_type(base, "preference"), as_type(base, "preference", preference_loss="kto", batch_size=2)
    kind = kind_of("preference")
    pair = kind.feedback_rows(dpo, item(correction="Hold the button for 10 s."))
    assert pair.format == "dpo"
    assert pair.rows[0]["chosen"] == [{"role": "assistant", "content": "Hold the button for 10 s."}]
    assert pair.rows[0]["rejected"] == [{"role": "assistant", "content": "Unplug it forever."}]
    assert pair.rows[0]["prompt"] == CHAT["messages"]
    same = kind.feedback_rows(dpo, item(correction="Unplug it forever."))
    assert same.rows == [] and same.reason == "correction_equals_answer"
    assert kind.feedback_rows(dpo, item(rating=5)).rows == []  # DPO needs a pair
    up, down = kind.feedback_rows(kto, item(rating=5)), kind.feedback_rows(kto, item(rating=1))
    assert up.format == down.format == "kto"
    assert (up.rows[0]["label"], down.rows[0]["label"]) == (True, False)
    assert up.rows[0]["completion"] == [{"role": "assistant", "content": "Unplug it forever."}]
    assert kind.feedback_rows(kto, FeedbackItem(1, CHAT, {"choices": ["x"]}, 3, "scale", None, False)).reason == "neutral_rating"


def test_kto_rows_pass_through_the_trainer_unpairing() -> None:
    from tuneloom.train.preference import unpaired

    pair = {
        "prompt": CHAT["messages"],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    single = {"prompt": CHAT["messages"], "completion": [{"role": "assistant", "content": "c"}], "label": False, "lineage": {}}
    out = unpaired([pair, single], seed=1)
    assert len(out) == 3 and {"prompt": CHAT["messages"], "completion": single["completion"], "label": False} in out


def test_classification_corrected_label_is_a_labelled_row(data_project_dir) -> None:
    task = tasks(data_project_dir)[CLS_TASK]
    kind = kind_of(task.type)
    one = FeedbackItem(3, {"input": ["My parcel never came"]}, {"labels": ["billing"]}, 1, "thumbs", " shipping ", True)
    assert kind.feedback_rows(task, one).rows == [{"text": "My parcel never came", "label": "shipping"}]
    two = FeedbackItem(
        4, {"input": ["a", "b"]}, {"labels": ["billing", "billing"]}, 1, "thumbs", json.dumps(["shipping", "billing"]), True
    )
    assert [r["label"] for r in kind.feedback_rows(task, two).rows] == ["shipping", "billing"]
    bad = FeedbackItem(5, {"input": ["a", "b"]}, {"labels": ["x", "y"]}, 1, "thumbs", "shipping", True)
    found = kind.feedback_rows(task, bad)
    assert found.rows == [] and found.reason == "correction_is_not_one_label_per_input" and found.needs_review
    multi = task.model_copy(update={"data": task.data.model_copy(update={"multi_label": True})})
    three = FeedbackItem(6, {"input": ["c"]}, {"labels": ["x"]}, 1, "thumbs", "shipping,billing", True)
    assert kind.feedback_rows(multi, three).rows == [{"text": "c", "labels": ["billing", "shipping"]}]


def test_other_kinds_say_they_do_not_convert(data_project_dir) -> None:
    task = as_type(tasks(data_project_dir)[CHAT_TASK], "ner")
    found = kind_of("ner").feedback_rows(task, item(correction="x"))
    assert found.rows == [] and found.reason == "ner tasks do not learn from served feedback" and not found.needs_review


def test_a_thumbs_down_next_to_a_better_answer_is_a_dpo_pair(data_project_dir) -> None:
    dpo = as_type(tasks(data_project_dir)[CHAT_TASK], "preference")
    down = FeedbackItem(8, CHAT, {"choices": ["Unplug it forever."]}, 1, "thumbs", None, True, better_answer="Hold reset 10 s.")
    pair = kind_of("preference").feedback_rows(dpo, down)
    assert (
        pair.rows[0]["chosen"][0]["content"] == "Hold reset 10 s."
        and pair.rows[0]["rejected"][0]["content"] == "Unplug it forever."
    )
