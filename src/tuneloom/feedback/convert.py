"""Feedback -> training rows: SFT examples, DPO pairs and KTO rows for chat, labelled rows for classification.

Task kinds call these (`TaskKind.feedback_rows`) and pick the format their training reads; the
rows have the same shape `tuneloom data prepare` writes, so they join a dataset version as they are.
"""

from __future__ import annotations

import json
from typing import Any

from tuneloom.config import TaskConfig
from tuneloom.tasks.base import Example, FeedbackItem, FeedbackRows

Messages = list[dict[str, str]]


def chat_prompt(task: TaskConfig, item: FeedbackItem) -> Messages | None:
    """The conversation the model answered (chat `messages`, or a completion `prompt` as one user turn)."""
    request = item.request or {}
    if isinstance(request.get("messages"), list):
        messages = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in request["messages"]]
    elif isinstance(request.get("prompt"), str):
        messages = [{"role": "user", "content": request["prompt"]}]
    else:
        return None
    if not messages or messages[-1]["role"] != "user":
        return None
    system = task.data.system_prompt
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system.strip()})
    return messages


def model_answer(item: FeedbackItem) -> str | None:
    """The first choice the model gave (what the rating is about)."""
    choices = (item.response or {}).get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], str):
        return choices[0]
    return None


def _no_prompt(item: FeedbackItem) -> FeedbackRows:
    reason = "no_stored_prompt" if item.request is None else "not_a_chat_request"
    return FeedbackRows("none", [], reason)  # serve.store_prompts off, or a request of another shape


def _unusable(item: FeedbackItem, fmt: str) -> FeedbackRows:
    """No row: a bad answer waits for a reviewer's correction; anything else has nothing to learn from."""
    if item.bad:
        return FeedbackRows("none", [], "needs_correction", needs_review=True)
    return FeedbackRows("none", [], f"no_correction_for_{fmt}")


def sft_rows(task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
    """A correction -> the prompt with the corrected answer as the assistant's turn."""
    prompt = chat_prompt(task, item)
    if prompt is None:
        return _no_prompt(item)
    if not item.correction:
        return _unusable(item, "sft")
    return FeedbackRows("sft", [{"messages": [*prompt, {"role": "assistant", "content": item.correction}]}])


def dpo_rows(task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
    """A correction (or, for a bad answer, a well-rated answer to the same prompt) next to the model's
    answer -> a pair: chosen = the correction, rejected = the answer."""
    prompt, answer = chat_prompt(task, item), model_answer(item)
    if prompt is None or answer is None:
        return _no_prompt(item)
    chosen = item.correction or (item.better_answer if item.bad else None)
    if not chosen:
        return _unusable(item, "dpo")
    if chosen.strip() == answer.strip():
        return FeedbackRows("none", [], "correction_equals_answer")
    row = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": answer}],
    }
    return FeedbackRows("dpo", [row])


def kto_rows(task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
    """An unpaired rating -> KTO's row: the answer, desirable (rated well) or undesirable (rated bad)."""
    prompt, answer = chat_prompt(task, item), model_answer(item)
    if prompt is None or answer is None:
        return _no_prompt(item)
    good = item.rating >= 4
    if not (good or item.bad):
        return FeedbackRows("none", [], "neutral_rating")
    return FeedbackRows("kto", [{"prompt": prompt, "completion": [{"role": "assistant", "content": answer}], "label": good}])


def _inputs(item: FeedbackItem) -> list[str] | None:
    texts = (item.request or {}).get("input")
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
        return texts
    return None


def _corrected_labels(correction: str, n: int) -> list[Any] | None:
    """One corrected label per input: the text itself for one input, a JSON list for several."""
    if n == 1:
        return [correction]
    try:
        parsed = json.loads(correction)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) and len(parsed) == n else None


def label_rows(task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
    """A corrected label -> a labelled row (`labels` split by data.label_separator for multi-label tasks)."""
    texts = _inputs(item)
    if texts is None:
        return _no_prompt(item)
    if not item.correction:
        return _unusable(item, "label")
    labels = _corrected_labels(item.correction.strip(), len(texts))
    if labels is None:
        return FeedbackRows("none", [], "correction_is_not_one_label_per_input", needs_review=True)
    rows: list[Example] = []
    data = task.data
    for text, label in zip(texts, labels):
        if data.multi_label:
            items = label if isinstance(label, list) else str(label).split(data.label_separator)
            rows.append({"text": text, "labels": sorted({" ".join(str(v).split()) for v in items} - {""})})
        else:
            rows.append({"text": text, "label": " ".join(str(label).split())})
    return FeedbackRows("label", rows)
