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


def generation_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    return {k: sum(v) / max(len(v), 1) for k, v in per_example_scores(predictions, references).items()}


def classification_scores(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
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
