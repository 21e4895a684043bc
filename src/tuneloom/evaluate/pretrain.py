"""Continued pre-training evaluation: loss and perplexity on held-out raw text, base vs tuned."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from tuneloom.evaluate.chat import load_tuned
from tuneloom.evaluate.stats import paired_bootstrap, ratio_metric
from tuneloom.train import pretrain, sft


@torch.inference_mode()
def text_losses(model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch_size: int,
                tick: Callable[[int], None]) -> list[tuple[float, int]]:
    """Per row: (summed negative log-likelihood, predicted tokens) over all its windows."""
    collate = sft.collator(tokenizer)
    out = []
    for row in rows:
        windows = pretrain.encode_split(tokenizer, [row], max_length)
        total, count = 0.0, 0
        for i in range(0, len(windows), batch_size):
            batch = {k: v.to(model.device) for k, v in collate([dict(w) for w in windows[i : i + batch_size]]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            targets = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=sft.IGNORE, reduction="sum")
            total, count = total + float(nll), count + int((targets != sft.IGNORE).sum())
        out.append((total, count))
        tick(1)
    return out


def _metrics(losses: list[tuple[float, int]]) -> dict[str, float]:
    loss = sum(s for s, _ in losses) / max(sum(c for _, c in losses), 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": sum(c for _, c in losses)}


def evaluate_pretrain(
    model_dir: Path, base_path: Path, method: str, precision: str, rows: list[dict[str, Any]], max_length: int,
    batch_size: int, trust_remote_code: bool, tick: Callable[[int], None], production: Any = None,
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = pretrain.load_tokenizer(model_dir, trust_remote_code)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, trust_remote_code=trust_remote_code).eval()
    base_losses = text_losses(base, tokenizer, rows, max_length, batch_size, tick)
    del base
    tuned_losses = text_losses(load_tuned(model_dir, base_path, method, dtype, trust_remote_code), tokenizer, rows, max_length, batch_size, tick)
    examples = [
        {"id": r["id"], "text": r["text"][:300], "score_base": -b[0] / max(b[1], 1), "score_tuned": -t[0] / max(t[1], 1)}
        for r, b, t in zip(rows, base_losses, tuned_losses)
    ]
    result = {
        "base": _metrics(base_losses),
        "tuned": _metrics(tuned_losses),
        "intervals": {"loss": paired_bootstrap(len(rows), ratio_metric(base_losses, tuned_losses))},
        "example_metric": "minus the loss per token",
        "examples": examples,
    }
    if production is not None:
        prod = load_tuned(production.path, Path(production.base_model_path), production.method, dtype, trust_remote_code)
        prod_losses = text_losses(prod, tokenizer, rows, max_length, batch_size, tick)
        result.update(production=_metrics(prod_losses),
                      intervals_production={"loss": paired_bootstrap(len(rows), ratio_metric(prod_losses, tuned_losses))})
    return result
