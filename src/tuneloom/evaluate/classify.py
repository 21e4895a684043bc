"""Classification evaluation: zero-shot base model vs the tuned classifier on the test split."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tuneloom.evaluate.metrics import calibration, classification_scores
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap
from tuneloom.inference import load_trained
from tuneloom.pooled_head import model_pooling, pool
from tuneloom.train import classify

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext


def _batches(items: list[Any], size: int) -> Any:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.inference_mode()
def embed(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int, pooling: str = "mean") -> torch.Tensor:
    """L2-normalised embeddings of the last hidden states, pooled by `pooled_head.pool` (mean: the
    sentence-transformers recipe for MiniLM)."""
    out = []
    for chunk in _batches(texts, batch_size):
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        pooled = pool(model(**batch).last_hidden_state, batch["attention_mask"], pooling)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
    return torch.cat(out)


def zero_shot(
    base_path: Path,
    tokenizer: Any,
    texts: list[str],
    labels: list[str],
    descriptions: dict[str, str],
    max_length: int,
    batch_size: int,
    trust_remote_code: bool,
) -> list[str]:
    """The base model without training: each text gets the label whose description it is closest to."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(base_path, dtype=torch.float32, trust_remote_code=trust_remote_code).eval()
    label_texts = [descriptions.get(label, label.replace("_", " ")) for label in labels]
    pooling = model_pooling(base_path)[0]
    vectors = embed(model, tokenizer, texts, max_length, batch_size, pooling)
    sims = vectors @ embed(model, tokenizer, label_texts, max_length, batch_size, pooling).T
    return [labels[i] for i in sims.argmax(-1).tolist()]


@torch.inference_mode()
def predict(
    model: Any, tokenizer: Any, texts: list[str], labels: list[str], max_length: int, batch_size: int, tick: Callable[[int], None]
) -> tuple[list[str], np.ndarray]:
    """Predicted labels and the full probability rows (examples x labels)."""
    preds, rows = [], []
    for chunk in _batches(texts, batch_size):
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        probs = model(**batch).logits.float().softmax(-1)
        preds += [labels[i] for i in probs.argmax(-1).tolist()]
        rows.append(probs.numpy())
        tick(len(chunk))
    return preds, np.concatenate(rows) if rows else np.zeros((0, len(labels)))


def _scores_with_calibration(truth: list[str], preds: list[str], probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    index = {label: i for i, label in enumerate(labels)}
    cal = calibration([index[t] for t in truth], probs)
    return {
        **classification_scores(truth, preds, labels),
        "ece": cal["ece"],
        "brier": cal["brier"],
        "reliability": cal["reliability"],
    }


def classification_intervals(
    truth: list[str], base: list[str], tuned: list[str], labels: list[str]
) -> dict[str, tuple[float, float]]:
    """Paired bootstrap intervals of tuned - base for accuracy, macro F1 and weighted F1."""
    from sklearn.metrics import f1_score

    y, b, t = np.asarray(truth), np.asarray(base), np.asarray(tuned)
    out = {"accuracy": paired_bootstrap(len(y), mean_metric(b == y, t == y))}
    for name, average in (("macro_f1", "macro"), ("weighted_f1", "weighted")):

        def metric(idx: np.ndarray, average: str = average) -> tuple[float, float]:
            return (
                f1_score(y[idx], b[idx], labels=labels, average=average, zero_division=0),
                f1_score(y[idx], t[idx], labels=labels, average=average, zero_division=0),
            )

        out[name] = paired_bootstrap(len(y), metric, resamples=500)
    return out


def _setup(ctx: EvalContext, multi_label: bool) -> tuple[Any, list[str], list[str], Any]:
    """(tokenizer, texts, zero-shot base predictions, a loader of trained classifiers) for `ctx`."""
    task = ctx.task
    tokenizer = classify.load_tokenizer(ctx.model_dir, task.trust_remote_code)
    texts = [r["text"] for r in ctx.rows]
    base = zero_shot(
        ctx.base_path,
        tokenizer,
        texts,
        ctx.labels,
        task.label_descriptions or {},
        task.train.max_length,
        task.eval.batch_size,
        task.trust_remote_code,
    )

    def load(model_dir: Path, base_path: Path | str, method: str) -> Any:
        return load_trained(
            "sequence_classification",
            model_dir,
            base_path,
            method,
            ctx.precision,
            ctx.labels,
            task.trust_remote_code,
            multi_label,
            tokenizer.pad_token_id,
        )

    return tokenizer, texts, base, load


def evaluate_classification(ctx: EvalContext) -> dict[str, Any]:
    """The zero-shot base vs the tuned classifier (and the production version when given)."""
    task, rows, labels = ctx.task, ctx.rows, ctx.labels
    max_length, batch_size = task.train.max_length, task.eval.batch_size
    tokenizer, texts, base_preds, load = _setup(ctx, multi_label=False)
    truth = [r["label"] for r in rows]
    model = load(ctx.model_dir, ctx.base_path, ctx.method)
    started = time.perf_counter()
    tuned_preds, tuned_probs = predict(model, tokenizer, texts, labels, max_length, batch_size, ctx.tick)
    confidence = tuned_probs.max(-1).tolist() if len(tuned_probs) else []
    latency_ms = 1000 * (time.perf_counter() - started) / max(len(texts), 1)
    examples = [
        {"id": r["id"], "text": r["text"][:300], "label": r["label"], "base": b, "tuned": t, "confidence": round(c, 4)}
        for r, b, t, c in zip(rows, base_preds, tuned_preds, confidence)
    ]
    result = {
        "labels": labels,
        "intervals": classification_intervals(truth, base_preds, tuned_preds, labels),
        "base": classification_scores(truth, base_preds, labels),
        "tuned": {**_scores_with_calibration(truth, tuned_preds, tuned_probs, labels), "latency_ms_per_example": latency_ms},
        "base_method": f"zero-shot: cosine similarity of {model_pooling(ctx.base_path)[0]}-pooled embeddings to label descriptions",
        "examples": examples,
    }
    if ctx.production is not None:
        prod = load(ctx.production.path, ctx.production.base_model_path, ctx.production.method)
        prod_preds, prod_probs = predict(prod, tokenizer, texts, labels, max_length, batch_size, ctx.tick)
        for e, p in zip(examples, prod_preds):
            e["production"] = p
        result.update(
            production=_scores_with_calibration(truth, prod_preds, prod_probs, labels),
            intervals_production=classification_intervals(truth, prod_preds, tuned_preds, labels),
        )
    return result


def multilabel_scores(truth: list[list[str]], preds: list[list[str]], labels: list[str]) -> dict[str, Any]:
    """Exact-set accuracy, macro/weighted F1 and per-class scores over label sets (scikit-learn, indicator form)."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_recall_fscore_support,
    )
    from sklearn.preprocessing import MultiLabelBinarizer

    binarize = MultiLabelBinarizer(classes=labels)
    y, p = binarize.fit_transform(truth), binarize.transform(preds)
    precision, recall, f1, support = precision_recall_fscore_support(y, p, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, p, average="weighted", zero_division=0)),
        "per_class": {
            label: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
            for label, a, b, c, d in zip(labels, precision, recall, f1, support)
        },
    }


@torch.inference_mode()
def predict_sets(
    model: Any, tokenizer: Any, texts: list[str], labels: list[str], max_length: int, batch_size: int, tick: Callable[[int], None]
) -> list[list[str]]:
    """Multi-label predictions: every label whose sigmoid probability exceeds 0.5."""
    out = []
    for chunk in _batches(texts, batch_size):
        batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        probs = model(**batch).logits.float().sigmoid()
        out += [[labels[i] for i in row.nonzero().flatten().tolist()] for row in probs > 0.5]
        tick(len(chunk))
    return out


def evaluate_multilabel(ctx: EvalContext) -> dict[str, Any]:
    """Multi-label classification: the zero-shot base (its closest label) vs the tuned classifier's label sets."""
    task, rows, labels = ctx.task, ctx.rows, ctx.labels
    max_length, batch_size = task.train.max_length, task.eval.batch_size
    tokenizer, texts, zero, load = _setup(ctx, multi_label=True)
    truth, base = [r["labels"] for r in rows], [[p] for p in zero]
    model = load(ctx.model_dir, ctx.base_path, ctx.method)
    started = time.perf_counter()
    tuned = predict_sets(model, tokenizer, texts, labels, max_length, batch_size, ctx.tick)
    latency_ms = 1000 * (time.perf_counter() - started) / max(len(texts), 1)
    examples = [
        {
            "id": r["id"],
            "text": r["text"][:300],
            "labels": t,
            "base": b,
            "tuned": u,
            "score_base": float(sorted(b) == t),
            "score_tuned": float(sorted(u) == t),
        }
        for r, t, b, u in zip(rows, truth, base, tuned)
    ]
    result = {
        "labels": labels,
        "multi_label": True,
        "base": multilabel_scores(truth, base, labels),
        "tuned": {**multilabel_scores(truth, tuned, labels), "latency_ms_per_example": latency_ms},
        "base_method": f"zero-shot: the one label whose description is closest (cosine of {model_pooling(ctx.base_path)[0]}-pooled embeddings)",
        "example_metric": "exact label set",
        "examples": examples,
    }
    if ctx.production is not None:
        prod = load(ctx.production.path, ctx.production.base_model_path, ctx.production.method)
        result["production"] = multilabel_scores(
            truth, predict_sets(prod, tokenizer, texts, labels, max_length, batch_size, ctx.tick), labels
        )
    return result
