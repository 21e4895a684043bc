"""Metrics against values worked out by hand."""

from __future__ import annotations

import pytest

from tuneloom.evaluate.metrics import classification_scores, exact_match, mean_scores, per_example_scores, rouge_l, token_f1


def test_token_f1_partial_overlap():
    # pred [the, cat, sat]; ref [the, cat, sat, on, the, mat]
    # common = the (min 1, 2 -> 1) + cat 1 + sat 1 = 3
    # precision 3/3 = 1, recall 3/6 = 0.5, F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert token_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)


def test_token_f1_counts_repeated_tokens():
    # pred [a, a, a, b] vs ref [a, b, b]: common = min(3, 1) + min(1, 2) = 2
    # precision 2/4, recall 2/3, F1 = 2 * (1/2) * (2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    assert token_f1("a a a b", "a b b") == pytest.approx(4 / 7)


def test_token_f1_ignores_case_and_punctuation():
    assert token_f1("Hello, World!", "hello world") == 1.0
    # "£7.95" -> tokens "£7", "95" in both
    assert token_f1("It costs £7.95.", "it costs £7.95") == 1.0


def test_token_f1_edge_cases():
    assert token_f1("", "") == 1.0  # both empty: equal
    assert token_f1("", "something") == 0.0
    assert token_f1("something", "") == 0.0
    assert token_f1("!!!", "") == 1.0  # punctuation only normalises to empty
    assert token_f1("dog", "cat") == 0.0


def test_exact_match():
    assert exact_match("The answer.", "the answer") == 1.0
    assert exact_match("  the   ANSWER ", "the answer") == 1.0
    assert exact_match("the answers", "the answer") == 0.0
    assert exact_match("answer the", "the answer") == 0.0  # order matters


def test_rouge_l_lcs():
    # pred: the cat sat on the mat (6 tokens); ref: the cat is on the mat (6 tokens)
    # LCS = the cat on the mat = 5 -> P = R = 5/6 -> F = 5/6
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)


def test_rouge_l_asymmetric_lengths():
    # pred: a b c d (4); ref: a c (2); LCS = a c = 2
    # P = 2/4, R = 2/2, F = 2 * 0.5 * 1 / 1.5 = 2/3
    assert rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    # swapped: P = 1, R = 0.5, same F
    assert rouge_l("a c", "a b c d") == pytest.approx(2 / 3)


def test_rouge_l_stems_and_ignores_case():
    # Porter stemming: running -> run, dogs -> dog
    assert rouge_l("Running dogs", "run dog") == pytest.approx(1.0)
    assert rouge_l("x y", "p q") == 0.0


def test_mean_generation_scores_average_over_examples():
    preds = ["the cat sat", "hello", "totally different"]
    refs = ["the cat sat on the mat", "hello", "nothing alike"]
    scores = mean_scores(per_example_scores(preds, refs))
    # token F1: (2/3 + 1 + 0) / 3 = 5/9
    assert scores["token_f1"] == pytest.approx(5 / 9)
    # exact match: (0 + 1 + 0) / 3
    assert scores["exact_match"] == pytest.approx(1 / 3)
    # ROUGE-L example 1: LCS 3, P = 3/3, R = 3/6, F = 2/3 -> (2/3 + 1 + 0) / 3 = 5/9
    assert scores["rouge_l"] == pytest.approx(5 / 9)
    assert set(scores) == {"rouge_l", "token_f1", "exact_match"}


def test_mean_generation_scores_empty():
    assert mean_scores(per_example_scores([], [])) == {"rouge_l": 0.0, "token_f1": 0.0, "exact_match": 0.0}


def test_classification_scores_against_hand_computed_confusion():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    s = classification_scores(y_true, y_pred, ["a", "b", "c"])
    # confusion (rows true, columns predicted):
    #        a  b  c
    #   a  [ 2, 1, 0 ]
    #   b  [ 0, 1, 1 ]
    #   c  [ 0, 0, 1 ]
    assert s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # accuracy = (2 + 1 + 1) / 6 = 2/3
    assert s["accuracy"] == pytest.approx(2 / 3)
    # precision = diagonal / column sum: a 2/2 = 1, b 1/2, c 1/2
    # recall    = diagonal / row sum:    a 2/3,     b 1/2, c 1/1
    pc = s["per_class"]
    assert pc["a"]["precision"] == pytest.approx(1.0) and pc["a"]["recall"] == pytest.approx(2 / 3)
    assert pc["b"]["precision"] == pytest.approx(0.5) and pc["b"]["recall"] == pytest.approx(0.5)
    assert pc["c"]["precision"] == pytest.approx(0.5) and pc["c"]["recall"] == pytest.approx(1.0)
    # F1: a = 2 * 1 * (2/3) / (5/3) = 4/5; b = 1/2; c = 2 * (1/2) * 1 / (3/2) = 2/3
    assert pc["a"]["f1"] == pytest.approx(4 / 5)
    assert pc["b"]["f1"] == pytest.approx(1 / 2)
    assert pc["c"]["f1"] == pytest.approx(2 / 3)
    assert [pc[c]["support"] for c in "abc"] == [3, 2, 1]
    # macro F1 = (4/5 + 1/2 + 2/3) / 3 = (24 + 15 + 20) / 30 / 3 = 59/90
    assert s["macro_f1"] == pytest.approx(59 / 90)
    # weighted F1 = (3 * 4/5 + 2 * 1/2 + 1 * 2/3) / 6 = (12/5 + 1 + 2/3) / 6 = (61/15) / 6 = 61/90
    assert s["weighted_f1"] == pytest.approx(61 / 90)


def test_classification_scores_label_without_examples():
    # label "d" never appears: its scores are 0 (no division-by-zero warning or error)
    s = classification_scores(["a", "b"], ["a", "a"], ["a", "b", "d"])
    assert s["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s["accuracy"] == pytest.approx(0.5)
    # a: P = 1/2, R = 1, F1 = 2/3; b: 0; d: 0 -> macro over 3 labels = 2/9
    assert s["macro_f1"] == pytest.approx(2 / 9)
    assert s["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
