"""The packaged general-ability set and its chat rows."""

from __future__ import annotations

import re
from collections import Counter

from tuneloom.evaluate.forgetting import general_rows, load_general_set

CATEGORIES = {
    "arithmetic",
    "unit_conversion",
    "geography",
    "science",
    "rewriting",
    "summarising",
    "grammar",
    "format",
    "reasoning",
    "refusal",
    "coding",
}


def test_general_set_loads_with_48_unique_ids():
    items = load_general_set()
    assert len(items) == 48
    ids = [i["id"] for i in items]
    assert len(set(ids)) == 48
    assert ids == [f"gen-{n:03d}" for n in range(1, 49)]


def test_general_set_fields_are_non_empty():
    for item in load_general_set():
        assert set(item) == {"id", "category", "question", "reference"}
        for field, value in item.items():
            assert isinstance(value, str) and value.strip() == value and value, (item["id"], field)


def test_general_set_covers_every_category():
    counts = Counter(i["category"] for i in load_general_set())
    assert set(counts) == CATEGORIES
    assert min(counts.values()) >= 3


def test_general_set_references_are_short():
    for item in load_general_set():
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", item["reference"]) if s]
        assert len(sentences) <= 2 and len(item["reference"]) <= 200, item["id"]
    assert len({i["question"] for i in load_general_set()}) == 48  # no question twice


def test_general_rows_without_system_prompt():
    rows = general_rows()
    items = load_general_set()
    assert len(rows) == 48
    for row, item in zip(rows, items):
        assert row["id"] == item["id"] and row["category"] == item["category"]
        assert row["messages"] == [
            {"role": "user", "content": item["question"]},
            {"role": "assistant", "content": item["reference"]},
        ]


def test_general_rows_with_system_prompt():
    rows = general_rows("  You are the Acme Home support assistant.  ")
    first = load_general_set()[0]
    assert rows[0]["messages"] == [
        {"role": "system", "content": "You are the Acme Home support assistant."},
        {"role": "user", "content": first["question"]},
        {"role": "assistant", "content": first["reference"]},
    ]
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in rows)
    # a blank system prompt is left out, as in data preparation
    assert all(len(r["messages"]) == 2 for r in general_rows("   "))


def test_general_rows_fit_the_chat_evaluator_reads():
    # evaluate_chat / score_model read row["id"], row["messages"][:-1] as the prompt,
    # row["messages"][-2] as the question and row["messages"][-1] as the reference
    for row in general_rows("sys"):
        assert row["messages"][-1]["role"] == "assistant"
        assert row["messages"][-2]["role"] == "user"
