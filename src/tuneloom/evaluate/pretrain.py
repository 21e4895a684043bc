"""Continued pre-training evaluation: loss and perplexity on held-out raw text, base vs tuned."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tuneloom.evaluate.stats import paired_bootstrap, ratio_metric
from tuneloom.inference import load_base, load_trained
from tuneloom.train import pretrain, sft

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext


@torch.inference_mode()
def text_losses(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch_size: int, tick: Callable[[int], None]
) -> list[tuple[float, int]]:
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
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), targets, ignore_index=sft.IGNORE, reduction="sum"
            )
            total, count = total + float(nll), count + int((targets != sft.IGNORE).sum())
        out.append((total, count))
        tick(1)
    return out


def _metrics(losses: list[tuple[float, int]]) -> dict[str, float]:
    loss = sum(s for s, _ in losses) / max(sum(c for _, c in losses), 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": sum(c for _, c in losses)}


def evaluate_pretrain(ctx: EvalContext) -> dict[str, Any]:
    """Loss and perplexity of base, tuned and (when given) production on held-out text."""
    task, rows, trust = ctx.task, ctx.rows, ctx.task.trust_remote_code
    tokenizer = pretrain.load_tokenizer(ctx.model_dir, trust)

    def losses(model: Any) -> list[tuple[float, int]]:
        return text_losses(model, tokenizer, rows, task.train.max_length, task.eval.batch_size, ctx.tick)

    base_losses = losses(load_base("causal_lm", ctx.base_path, ctx.precision, [], trust))
    tuned_losses = losses(load_trained("causal_lm", ctx.model_dir, ctx.base_path, ctx.method, ctx.precision, [], trust))
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
    if ctx.production is not None:
        prod = ctx.production
        prod_losses = losses(load_trained("causal_lm", prod.path, prod.base_model_path, prod.method, ctx.precision, [], trust))
        result.update(
            production=_metrics(prod_losses),
            intervals_production={"loss": paired_bootstrap(len(rows), ratio_metric(prod_losses, tuned_losses))},
        )
    return result
