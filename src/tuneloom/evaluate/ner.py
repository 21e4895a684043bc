"""NER evaluation: entity precision, recall and F1 (seqeval, strict IOB2) of base and tuned taggers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tuneloom.evaluate.metrics import ner_scores
from tuneloom.inference import load_base, load_trained
from tuneloom.train import ner

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext


@torch.inference_mode()
def tag(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    tags: list[str],
    max_length: int,
    batch_size: int,
    tick: Callable[[int], None],
) -> tuple[list[list[str]], list[list[str]]]:
    """(true tags, predicted tags) per row, over the tokens that carry a tag (special tokens left out)."""
    encoded, _ = ner.encode_split(tokenizer, rows, tags, max_length)
    collate = ner.collator(tokenizer)
    truth, preds = [], []
    for i in range(0, len(encoded), batch_size):
        batch = collate([dict(e) for e in encoded[i : i + batch_size]])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for gold, guess in zip(batch["labels"].tolist(), logits.argmax(-1).tolist()):
            kept = [(g, p) for g, p in zip(gold, guess) if g != ner.IGNORE]
            truth.append([tags[g] for g, _ in kept])
            preds.append([tags[p] for _, p in kept])
        tick(len(batch["labels"]))
    return truth, preds


def _metrics(truth: list[list[str]], preds: list[list[str]]) -> dict[str, Any]:
    scores = ner_scores(truth, preds)
    return {
        "entity_f1": scores["f1"],
        "entity_precision": scores["precision"],
        "entity_recall": scores["recall"],
        "per_type": scores["per_type"],
    }


def evaluate_ner(ctx: EvalContext) -> dict[str, Any]:
    """The base encoder with a seeded untrained head vs the tuned tagger (and the production version when given)."""
    task, rows, trust = ctx.task, ctx.rows, ctx.task.trust_remote_code
    tags = ner.tag_names(ctx.labels)
    tokenizer = ner.load_tokenizer(ctx.model_dir, trust)

    def run(model: Any) -> tuple[list[list[str]], list[list[str]]]:
        return tag(model, tokenizer, rows, tags, task.train.max_length, task.eval.batch_size, ctx.tick)

    truth, base_preds = run(load_base("token_classification", ctx.base_path, ctx.precision, tags, trust))
    tuned = load_trained("token_classification", ctx.model_dir, ctx.base_path, ctx.method, ctx.precision, tags, trust)
    started = time.perf_counter()
    _, tuned_preds = run(tuned)
    latency_ms = 1000 * (time.perf_counter() - started) / max(len(rows), 1)
    examples = [
        {"id": r["id"], "text": r["text"][:300], "score_base": float(b == t), "score_tuned": float(u == t)}
        for r, t, b, u in zip(rows, truth, base_preds, tuned_preds)
    ]
    result = {
        "labels": ctx.labels,
        "base": _metrics(truth, base_preds),
        "tuned": {**_metrics(truth, tuned_preds), "latency_ms_per_example": latency_ms},
        "base_method": "the base encoder with an untrained (seeded) tagging head",
        "example_metric": "sentence tagged exactly right",
        "examples": examples,
    }
    if ctx.production is not None:
        prod = ctx.production
        model = load_trained("token_classification", prod.path, prod.base_model_path, prod.method, ctx.precision, tags, trust)
        result["production"] = _metrics(truth, run(model)[1])
    return result
