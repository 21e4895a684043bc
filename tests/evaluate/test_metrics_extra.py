"""Calibration and NER metrics against values worked out by hand."""

from __future__ import annotations

import pytest

from tuneloom.evaluate.metrics import calibration, ner_scores

# --------------------------------------------------------------------------------------------
# calibration

# 4 examples, 3 classes
PROBS = [
    [0.90, 0.05, 0.05],  # true 0: top 0.90 -> class 0, correct
    [0.85, 0.10, 0.05],  # true 1: top 0.85 -> class 0, wrong
    [0.20, 0.70, 0.10],  # true 1: top 0.70 -> class 1, correct (0.70 sits on a bin edge)
    [0.30, 0.30, 0.40],  # true 0: top 0.40 -> class 2, wrong
]
TRUE = [0, 1, 1, 0]


def test_calibration_ece_on_four_examples():
    c = calibration(TRUE, PROBS, bins=10)
    # bins are right-closed: (0.8, 0.9] holds 0.90 and 0.85; (0.6, 0.7] holds 0.70; (0.3, 0.4] holds 0.40
    # (0.8, 0.9]: confidence (0.90 + 0.85) / 2 = 0.875, accuracy 1/2 -> |0.5 - 0.875| = 0.375, weight 2/4
    # (0.6, 0.7]: confidence 0.70, accuracy 1            -> |1 - 0.7|     = 0.3,   weight 1/4
    # (0.3, 0.4]: confidence 0.40, accuracy 0            -> |0 - 0.4|     = 0.4,   weight 1/4
    # ECE = 0.375 * 2/4 + 0.3 / 4 + 0.4 / 4 = 0.1875 + 0.075 + 0.1 = 0.3625
    assert c["ece"] == pytest.approx(0.3625)
    rel = c["reliability"]
    assert len(rel) == 10
    assert [b["count"] for b in rel] == [0, 0, 0, 1, 0, 0, 1, 0, 2, 0]
    assert rel[8]["bin_low"] == pytest.approx(0.8) and rel[8]["bin_high"] == pytest.approx(0.9)
    assert rel[8]["confidence"] == pytest.approx(0.875) and rel[8]["accuracy"] == pytest.approx(0.5)
    assert rel[6]["confidence"] == pytest.approx(0.7) and rel[6]["accuracy"] == pytest.approx(1.0)
    assert rel[3]["confidence"] == pytest.approx(0.4) and rel[3]["accuracy"] == pytest.approx(0.0)
    # empty bins are listed, with no confidence or accuracy
    assert rel[0] == {"bin_low": 0.0, "bin_high": 0.1, "confidence": None, "accuracy": None, "count": 0}
    assert sum(b["count"] for b in rel) == 4


def test_calibration_brier_on_four_examples():
    c = calibration(TRUE, PROBS)
    # per example, sum over classes of (p - one_hot)^2:
    #   (0.90 - 1)^2 + 0.05^2 + 0.05^2       = 0.01 + 0.0025 + 0.0025 = 0.015
    #   0.85^2 + (0.10 - 1)^2 + 0.05^2       = 0.7225 + 0.81 + 0.0025 = 1.535
    #   0.20^2 + (0.70 - 1)^2 + 0.10^2       = 0.04 + 0.09 + 0.01     = 0.14
    #   (0.30 - 1)^2 + 0.30^2 + 0.40^2       = 0.49 + 0.09 + 0.16     = 0.74
    # mean = (0.015 + 1.535 + 0.14 + 0.74) / 4 = 2.43 / 4 = 0.6075
    assert c["brier"] == pytest.approx(0.6075)


def test_calibration_with_two_bins():
    c = calibration(TRUE, PROBS, bins=2)
    # [0, 0.5]: 0.40 (wrong)                       -> |0 - 0.4| = 0.4, weight 1/4
    # (0.5, 1]: 0.90 ok, 0.85 wrong, 0.70 ok        -> confidence 2.45 / 3, accuracy 2/3
    #           |2/3 - 2.45/3| = 0.45 / 3 = 0.15, weight 3/4
    # ECE = 0.4 / 4 + 0.15 * 3/4 = 0.1 + 0.1125 = 0.2125
    assert c["ece"] == pytest.approx(0.2125)
    assert [b["count"] for b in c["reliability"]] == [1, 3]


def test_calibration_perfect_and_worst():
    # sure and right: ECE 0, Brier 0
    c = calibration([0, 1], [[1.0, 0.0], [0.0, 1.0]])
    assert c["ece"] == 0.0 and c["brier"] == 0.0
    assert c["reliability"][-1]["count"] == 2  # confidence 1.0 goes in the last bin, (0.9, 1.0]
    # sure and wrong: ECE 1, Brier = 1^2 + 1^2 = 2
    c = calibration([1, 0], [[1.0, 0.0], [0.0, 1.0]])
    assert c["ece"] == pytest.approx(1.0) and c["brier"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "y, probs, bins",
    [
        ([], [], 10),  # no examples
        ([0, 1], [[0.5, 0.5]], 10),  # one label per row
        ([2], [[0.5, 0.5]], 10),  # class index out of range
        ([0], [[1.5, -0.5]], 10),  # not probabilities
        ([0], [0.5, 0.5], 10),  # not 2-D
        ([0], [[0.5, 0.5]], 0),  # no bins
    ],
)
def test_calibration_rejects_bad_input(y, probs, bins):
    with pytest.raises(ValueError):
        calibration(y, probs, bins=bins)


# --------------------------------------------------------------------------------------------
# NER


def test_ner_scores_missed_wrong_type_and_correct():
    true = [
        ["B-PER", "I-PER", "O", "O", "B-LOC"],  # John Smith lives in Paris
        ["O", "O", "B-LOC", "I-LOC"],  # we visited New York
    ]
    pred = [
        ["O", "O", "O", "O", "B-ORG"],  # John Smith missed; Paris tagged as an ORG (wrong type)
        ["O", "O", "B-LOC", "I-LOC"],  # New York right
    ]
    s = ner_scores(true, pred)
    # true entities: PER(John Smith), LOC(Paris), LOC(New York) = 3
    # predicted:     ORG(Paris), LOC(New York)                   = 2; correct: LOC(New York) = 1
    # precision 1/2, recall 1/3, F1 = 2 * (1/2) * (1/3) / (1/2 + 1/3) = (1/3) / (5/6) = 2/5
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 / 5)
    pt = s["per_type"]
    assert set(pt) == {"LOC", "ORG", "PER"}
    # LOC: 1 of 1 predicted right, 1 of 2 true found -> P 1, R 1/2, F1 = 2 * 1 * 0.5 / 1.5 = 2/3
    assert pt["LOC"]["precision"] == pytest.approx(1.0)
    assert pt["LOC"]["recall"] == pytest.approx(0.5)
    assert pt["LOC"]["f1"] == pytest.approx(2 / 3)
    assert pt["LOC"]["support"] == 2
    # PER: nothing predicted (precision 0/0 -> 0), 0 of 1 found -> all 0
    assert pt["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # ORG: 0 of 1 predicted right, no true ORG (recall 0/0 -> 0)
    assert pt["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_ner_scores_are_strict_about_spans_and_iob2():
    # an entity starting with I- is no entity in strict IOB2 (the lenient conlleval mode would count it)
    s = ner_scores([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    # a partial span does not count either: 0 of 1 predicted right, 0 of 1 found
    s = ner_scores([["B-ORG", "I-ORG", "I-ORG"]], [["B-ORG", "I-ORG", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    # everything right
    s = ner_scores([["B-ORG", "I-ORG", "O", "B-PER"]], [["B-ORG", "I-ORG", "O", "B-PER"]])
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 1.0, 1.0)
    assert s["per_type"]["PER"]["support"] == 1


def test_ner_scores_without_entities():
    s = ner_scores([["O", "O"]], [["O", "O"]])
    assert s == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}


def test_ner_scores_rejects_misaligned_sequences():
    with pytest.raises(ValueError, match="sequence 0"):
        ner_scores([["B-PER", "O"]], [["B-PER"]])
    with pytest.raises(ValueError, match="2 sequences"):
        ner_scores([["O"], ["O"]], [["O"]])
