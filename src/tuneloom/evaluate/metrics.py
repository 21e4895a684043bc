"""Task metrics. ROUGE-L and the classification scores come from rouge-score and scikit-learn."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from rouge_score import rouge_scorer

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def _normalize(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def answer_tokens(text: str) -> list[str]:
    """The tokens token F1 compares: lower-cased, punctuation removed, split on whitespace."""
    return _normalize(text)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style bag-of-tokens F1 (a few lines; the `evaluate` package would fetch it from the Hub)."""
    pred, ref = _normalize(prediction), _normalize(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(_normalize(prediction) == _normalize(reference))


def rouge_l(prediction: str, reference: str) -> float:
    return _SCORER.score(reference, prediction)["rougeL"].fmeasure


def per_example_scores(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    return {
        "rouge_l": list(map(rouge_l, predictions, references)),
        "token_f1": list(map(token_f1, predictions, references)),
        "exact_match": list(map(exact_match, predictions, references)),
    }


def mean_scores(per_example: dict[str, list[float]]) -> dict[str, float]:
    """The metric over a set: the mean of the per-example scores (0.0 for an empty set)."""
    return {k: sum(v) / max(len(v), 1) for k, v in per_example.items()}


def classification_scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "weighted_f1": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def calibration(y_true_idx: Any, probs: Any, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error, multi-class Brier score and the reliability table of a classifier.

    `y_true_idx`: the true class index of each example; `probs`: an (examples, classes) array of
    predicted probabilities (rows summing to 1). Confidence is the top probability and a prediction
    is correct when its arg-max is the true class. The confidences fall into `bins` equal-width bins
    over [0, 1], closed on the right (the first bin also takes 0): (0.6, 0.7] for 0.7 with 10 bins.

    - ece = sum over bins of (bin count / n) * |accuracy in bin - mean confidence in bin|
    - brier = mean over examples of sum over classes of (p - one_hot)^2 (0 is perfect, 2 the worst)
    - reliability: one entry per bin, empty bins included with count 0 and confidence and accuracy None
    """
    import numpy as np

    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    p = np.asarray(probs, dtype=float)
    y = np.asarray(y_true_idx)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D (examples, classes) array, got shape {p.shape}")
    if y.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true_idx must hold one class index per row of probs: {y.shape} vs {p.shape}")
    if len(y) == 0:
        raise ValueError("calibration needs at least one example")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true_idx must be integer class indices in [0, {p.shape[1]})")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite probabilities in [0, 1]")

    n = len(y)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    brier = float(((p - onehot) ** 2).sum(axis=1).mean())

    edges = np.arange(bins + 1) / bins  # i / bins is exact at the edges (0.7, not 0.7000000000000001)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # right-closed bins
    ece = 0.0
    reliability = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        conf_b: float | None = None
        acc_b: float | None = None
        if count:
            conf_b, acc_b = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += count / n * abs(acc_b - conf_b)
        reliability.append(
            {"bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "confidence": conf_b, "accuracy": acc_b, "count": count}
        )
    return {"ece": float(ece), "brier": brier, "reliability": reliability}


def ner_scores(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, Any]:
    """Entity-level precision, recall and F1 with seqeval (IOB2 tags, strict mode), overall and per type.

    Strict mode counts an entity only when its type and exact span match and the tags form a valid
    IOB2 entity (an `I-` tag without its `B-` starts no entity). The overall scores are micro
    averages over entities; per_type maps each entity type seen in either list to precision,
    recall, f1 and support (true entities of that type). A score whose denominator is 0 is 0.
    """
    import warnings

    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    if len(true_tags) != len(pred_tags):
        raise ValueError(f"true_tags has {len(true_tags)} sequences but pred_tags has {len(pred_tags)}")
    for i, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} true tags but {len(p)} predicted tags")
    true_tags, pred_tags = [list(t) for t in true_tags], [list(p) for p in pred_tags]
    with warnings.catch_warnings():  # with no entity at all, seqeval's macro average is a mean of nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(true_tags, pred_tags, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    averages = {"micro avg", "macro avg", "weighted avg"}
    per_type = {
        name: {
            "precision": float(s["precision"]),
            "recall": float(s["recall"]),
            "f1": float(s["f1-score"]),
            "support": int(s["support"]),
        }
        for name, s in sorted(report.items())
        if name not in averages
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "per_type": per_type,
    }
