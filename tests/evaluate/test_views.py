"""Per-slice results and improved/worsened example lists added to every evaluation."""

from __future__ import annotations

import pytest

from tuneloom.evaluate.views import per_example_views
from tuneloom.tasks import kind_of


def test_chat_slices_and_changes():
    rows = [{"slice": "shipping"}, {"slice": "shipping"}, {"slice": "returns"}]
    examples = [
        {"id": "a", "token_f1_base": 0.2, "token_f1_tuned": 0.6},
        {"id": "b", "token_f1_base": 0.4, "token_f1_tuned": 0.4},
        {"id": "c", "token_f1_base": 0.5, "token_f1_tuned": 0.1},
    ]
    result = {"examples": examples}
    per_example_views(kind_of("chat_sft"), result, rows)
    assert [e["id"] for e in result["improved"]] == ["a"] and [e["id"] for e in result["worsened"]] == ["c"]
    assert result["slices"]["shipping"]["n"] == 2
    assert result["slices"]["shipping"]["base"] == pytest.approx(0.3)  # (0.2 + 0.4) / 2
    assert result["slices"]["shipping"]["tuned"] == pytest.approx(0.5)  # (0.6 + 0.4) / 2
    assert result["slices"]["returns"]["tuned"] == pytest.approx(0.1)


def test_chat_without_slice_column_has_no_slices():
    result = {"examples": [{"id": "a", "token_f1_base": 0.1, "token_f1_tuned": 0.1}]}
    per_example_views(kind_of("chat_sft"), result, [{}])
    assert result["slices"] == {} and result["improved"] == [] and result["worsened"] == []


def test_classification_slices_default_to_the_label():
    rows = [{"label": "x"}, {"label": "x"}, {"label": "y"}]
    examples = [
        {"id": "1", "label": "x", "base": "y", "tuned": "x"},  # improved
        {"id": "2", "label": "x", "base": "x", "tuned": "y"},  # worsened
        {"id": "3", "label": "y", "base": "y", "tuned": "y"},
    ]
    result = {"examples": examples}
    per_example_views(kind_of("classification"), result, rows)
    assert [e["id"] for e in result["improved"]] == ["1"] and [e["id"] for e in result["worsened"]] == ["2"]
    assert result["slices"]["x"] == {"n": 2, "metric": "accuracy", "base": 0.5, "tuned": 0.5}
    assert result["slices"]["y"]["tuned"] == 1.0
