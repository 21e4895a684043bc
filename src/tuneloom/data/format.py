"""One source record -> one example in the task's row format (see the README's data contract).

Each builder returns (example, None) or (None, reject reason). Texts are cleaned here, except
NER text, which stays verbatim so that the character spans keep pointing at the right place.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from tuneloom.config import DataConfig
from tuneloom.data.clean import Cleaner

Example = dict[str, Any]
ROLES = ("system", "user", "assistant")


class Span(TypedDict):
    """One NER entity: a character span (end exclusive) and its label."""

    start: int
    end: int
    label: str


def _parsed(value: Any) -> Any:
    """A list or object cell: as is from JSON/Parquet, parsed when a CSV/xlsx cell holds JSON text."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return None
    return value


def _cell(record: dict[str, Any], column: str | None) -> Any:
    """The record's value in a column role the task kind requires (so validation has set it)."""
    if column is None:
        raise KeyError(column)  # what record[None] raised before; unreachable after config validation
    return record[column]


def _length_problem(data: DataConfig, texts: list[str]) -> str | None:
    total = sum(len(t) for t in texts)
    if total > data.max_chars:
        return "too_long"
    return None


def chat_example(data: DataConfig, record: dict[str, Any], clean: Cleaner) -> tuple[Example | None, str | None]:
    cols = data.columns
    if cols.messages:
        messages = _parsed(_cell(record, cols.messages))
        if not isinstance(messages, list) or not messages:
            return None, "invalid_messages"
        out = []
        for msg in messages:
            if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
                return None, "invalid_messages"
            out.append({"role": msg["role"], "content": clean.text(msg["content"])})
        if not any(m["role"] == "assistant" and len(m["content"]) >= data.min_chars for m in out):
            return None, "no_assistant_turn"
        if any(len(m["content"]) < data.min_chars for m in out if m["role"] == "user"):
            return None, "empty_or_short_prompt"
    else:
        if any(isinstance(_cell(record, c), (list, dict)) for c in (cols.prompt, cols.response)):
            return None, "not_text"  # a JSON list or object where text belongs: not its repr
        prompt, response = clean.text(_cell(record, cols.prompt)), clean.text(_cell(record, cols.response))
        if len(prompt) < data.min_chars:
            return None, "empty_or_short_prompt"
        if len(response) < data.min_chars:
            return None, "empty_or_short_response"
        out = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    if data.system_prompt and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": data.system_prompt.strip()})
    reason = _length_problem(data, [m["content"] for m in out if m["role"] != "system"])
    return (None, reason) if reason else ({"messages": out}, None)


def _labels(data: DataConfig, value: Any) -> list[str]:
    parsed = _parsed(value)
    if isinstance(parsed, list):
        items = [str(v) for v in parsed]
    elif data.multi_label:
        items = str(value).split(data.label_separator)
    else:
        items = [str(value)]
    return sorted({t for t in (" ".join(i.split()) for i in items) if t})


def classification_example(data: DataConfig, record: dict[str, Any], clean: Cleaner) -> tuple[Example | None, str | None]:
    text = "\n\n".join(t for t in (clean.text(record[c]) for c in data.columns.text_columns()) if t)
    labels = _labels(data, _cell(record, data.columns.label))
    if not labels:
        return None, "missing_label"
    if len(labels) > 1 and not data.multi_label:
        labels = [" ".join(str(_cell(record, data.columns.label)).split())]
    if len(text) < data.min_chars:
        return None, "empty_or_short_text"
    reason = _length_problem(data, [text])
    if reason:
        return None, reason
    return ({"text": text, "labels": labels} if data.multi_label else {"text": text, "label": labels[0]}), None


def ner_example(data: DataConfig, record: dict[str, Any], clean: Cleaner) -> tuple[Example | None, str | None]:
    text = str(record[data.columns.text_columns()[0]])
    if len(text.strip()) < data.min_chars:
        return None, "empty_or_short_text"
    reason = _length_problem(data, [text])
    if reason:
        return None, reason
    raw = _parsed(_cell(record, data.columns.entities))
    if raw == "" or raw is None:
        raw = []
    if not isinstance(raw, list):
        return None, "invalid_entities"
    spans: list[Span] = []
    for item in raw:
        if isinstance(item, dict):
            start, end, label = item.get("start"), item.get("end"), item.get("label")
        elif isinstance(item, (list, tuple)) and len(item) == 3:
            start, end, label = item
        else:
            return None, "invalid_entities"
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(label, str) and label.strip()):
            return None, "invalid_entities"
        if not 0 <= start < end <= len(text):
            return None, "entity_out_of_range"
        spans.append({"start": start, "end": end, "label": label.strip()})
    spans.sort(key=lambda s: (s["start"], s["end"]))
    if any(a["end"] > b["start"] for a, b in zip(spans, spans[1:])):
        return None, "overlapping_entities"
    return {"text": text, "entities": spans}, None


def _prompt_messages(data: DataConfig, value: Any, clean: Cleaner) -> list[dict[str, str]] | None:
    parsed = _parsed(value)
    if isinstance(parsed, list):
        if not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in parsed):
            return None
        messages = [{"role": m["role"], "content": clean.text(m["content"])} for m in parsed]
    else:
        messages = [{"role": "user", "content": clean.text(value)}]
    if not messages or messages[-1]["role"] != "user" or len(messages[-1]["content"]) < data.min_chars:
        return None
    if data.system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": data.system_prompt.strip()})
    return messages


def _answer(value: Any, clean: Cleaner) -> str:
    parsed = _parsed(value)
    if isinstance(parsed, list) and parsed and isinstance(parsed[-1], dict):
        return clean.text(parsed[-1].get("content", ""))
    return clean.text(value)


def preference_example(data: DataConfig, record: dict[str, Any], clean: Cleaner) -> tuple[Example | None, str | None]:
    cols = data.columns
    prompt = _prompt_messages(data, _cell(record, cols.prompt), clean)
    if prompt is None:
        return None, "empty_or_invalid_prompt"
    chosen, rejected = _answer(_cell(record, cols.chosen), clean), _answer(_cell(record, cols.rejected), clean)
    if len(chosen) < data.min_chars or len(rejected) < data.min_chars:
        return None, "empty_or_short_answer"
    if chosen == rejected:
        return None, "chosen_equals_rejected"
    reason = _length_problem(data, [m["content"] for m in prompt if m["role"] != "system"] + [chosen, rejected])
    if reason:
        return None, reason
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }, None


def pretrain_example(data: DataConfig, record: dict[str, Any], clean: Cleaner) -> tuple[Example | None, str | None]:
    text = "\n\n".join(t for t in (clean.text(record[c]) for c in data.columns.text_columns()) if t)
    if len(text) < data.min_chars:
        return None, "empty_or_short_text"
    reason = _length_problem(data, [text])
    return (None, reason) if reason else ({"text": text}, None)


def dedup_texts(example: Example) -> list[str]:
    """The texts that make an example what it is, for exact and near duplicate detection."""
    if "messages" in example:
        return [m["content"] for m in example["messages"] if m["role"] != "system"]
    if "chosen" in example:
        return [m["content"] for m in example["prompt"] if m["role"] != "system"] + [example["chosen"][0]["content"]]
    if "query" in example:  # embedding: a query and its answer or passage
        return [example["query"], example.get("answer") or example.get("passage") or ""]
    return [example["text"]]
