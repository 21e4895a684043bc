"""Forgetting check: a small hand-written set of general questions a chat model should still handle.

Domain tuning can make a small model worse at everything else (arithmetic, following a format,
declining a harmful request...). `general_rows` turns the packaged set into the chat rows the chat
evaluator reads, so the base and tuned models can be scored on it exactly as on the test split
(`tuneloom.evaluate.chat.score_model`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["GENERAL_SET", "general_rows", "load_general_set"]

GENERAL_SET = "general_set.jsonl"
_FIELDS = ("id", "category", "question", "reference")


def load_general_set() -> list[dict[str, str]]:
    """The packaged general-ability set: dicts with id, category, question and reference."""
    text = resources.files("tuneloom.evaluate").joinpath(GENERAL_SET).read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [f for f in _FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
        if missing:
            raise ValueError(f"{GENERAL_SET} line {number}: missing or empty field(s) {missing}")
        rows.append({f: row[f] for f in _FIELDS})
    return rows


def general_rows(system_prompt: str | None = None) -> list[dict[str, Any]]:
    """The set as chat rows: `{"id", "category", "messages": [system?, user, assistant(reference)]}`.

    Pass the task's `data.system_prompt` to ask the general questions the way the tuned model is
    used; a blank system prompt is left out, as in data preparation.
    """
    rows = []
    for item in load_general_set():
        messages = [{"role": "user", "content": item["question"]}, {"role": "assistant", "content": item["reference"]}]
        if system_prompt and system_prompt.strip():
            messages.insert(0, {"role": "system", "content": system_prompt.strip()})
        rows.append({"id": item["id"], "category": item["category"], "messages": messages})
    return rows
