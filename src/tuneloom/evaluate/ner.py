"""NER evaluation: entity precision, recall and F1 (seqeval, strict IOB2) of base and tuned taggers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from tuneloom.evaluate.metrics import ner_scores
from tuneloom.train import ner


def load_tagger(model_dir: Path, base_path: Path, method: str, tags: list[str], trust_remote_code: bool) -> Any:
    """A trained tagger: full weights, or the base with its adapter and tagging head."""
    from transformers import AutoModelForTokenClassification

    if method == "full":
        return AutoModelForTokenClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code).eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(base_tagger(base_path, tags, trust_remote_code), model_dir).eval()


def base_tagger(base_path: Path, tags: list[str], trust_remote_code: bool) -> Any:
    """The base encoder with an untrained tagging head (seeded): what the base gives before tuning."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    return AutoModelForTokenClassification.from_pretrained(
        base_path, num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
        dtype=torch.float32, trust_remote_code=trust_remote_code,
    ).eval()


@torch.inference_mode()
def tag(model: Any, tokenizer: Any, rows: list[dict[str, Any]], tags: list[str], max_length: int, batch_size: int,
        tick: Callable[[int], None]) -> tuple[list[list[str]], list[list[str]]]:
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
    return {"entity_f1": scores["f1"], "entity_precision": scores["precision"], "entity_recall": scores["recall"],
            "per_type": scores["per_type"]}


def evaluate_ner(
    model_dir: Path, base_path: Path, method: str, entity_types: list[str], rows: list[dict[str, Any]], max_length: int,
    batch_size: int, trust_remote_code: bool, tick: Callable[[int], None], production: Any = None,
) -> dict[str, Any]:
    tags = ner.tag_names(entity_types)
    tokenizer = ner.load_tokenizer(model_dir, trust_remote_code)
    truth, base_preds = tag(base_tagger(base_path, tags, trust_remote_code), tokenizer, rows, tags, max_length, batch_size, tick)
    tuned = load_tagger(model_dir, base_path, method, tags, trust_remote_code)
    started = time.perf_counter()
    _, tuned_preds = tag(tuned, tokenizer, rows, tags, max_length, batch_size, tick)
    latency_ms = 1000 * (time.perf_counter() - started) / max(len(rows), 1)
    examples = [
        {"id": r["id"], "text": r["text"][:300], "score_base": float(b == t), "score_tuned": float(u == t)}
        for r, t, b, u in zip(rows, truth, base_preds, tuned_preds)
    ]
    result = {
        "labels": entity_types,
        "base": _metrics(truth, base_preds),
        "tuned": {**_metrics(truth, tuned_preds), "latency_ms_per_example": latency_ms},
        "base_method": "the base encoder with an untrained (seeded) tagging head",
        "example_metric": "sentence tagged exactly right",
        "examples": examples,
    }
    if production is not None:
        prod = load_tagger(production.path, Path(production.base_model_path), production.method, tags, trust_remote_code)
        _, prod_preds = tag(prod, tokenizer, rows, tags, max_length, batch_size, tick)
        result["production"] = _metrics(truth, prod_preds)
    return result
