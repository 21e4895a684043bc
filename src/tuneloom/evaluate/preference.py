"""Preference evaluation: DPO's implicit reward of the tuned policy, with the base model as reference.

reward(answer) = beta * (log p_tuned(answer | prompt) - log p_base(answer | prompt)); a test pair
counts as right when the chosen answer earns the higher reward. The base, being its own
reference, has reward 0 for every answer: accuracy 0 and margin 0 (the floor to beat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tuneloom.evaluate.stats import mean_metric, paired_bootstrap
from tuneloom.inference import load_base, load_trained
from tuneloom.train import sft

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext


@torch.inference_mode()
def answer_logps(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    side: str,
    max_length: int,
    batch_size: int,
    tick: Callable[[int], None],
) -> list[float]:
    """Summed log-probability of each row's `side` answer (chosen or rejected) after its prompt."""
    encoded = [sft.encode_chat(tokenizer, r["prompt"] + r[side], max_length) for r in rows]
    collate = sft.collator(tokenizer)
    out: list[float] = []
    for i in range(0, len(encoded), batch_size):
        batch = collate([{k: e[k] for k in ("input_ids", "attention_mask", "labels")} for e in encoded[i : i + batch_size]])
        logits = model(
            input_ids=batch["input_ids"].to(model.device), attention_mask=batch["attention_mask"].to(model.device)
        ).logits
        targets = batch["labels"][:, 1:].to(model.device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), targets, ignore_index=sft.IGNORE, reduction="none"
        )
        out += (-nll.sum(1)).tolist()
        tick(len(targets))
    return out


def _rewards(
    model: Any,
    reference: dict[str, list[float]],
    tokenizer: Any,
    rows: list[dict[str, Any]],
    beta: float,
    max_length: int,
    batch_size: int,
    tick: Callable[[int], None],
) -> tuple[list[float], list[float]]:
    """Per pair: the policy's (chosen reward, rejected reward) against the reference log-probabilities."""
    sides = [
        [
            beta * (p - r)
            for p, r in zip(answer_logps(model, tokenizer, rows, side, max_length, batch_size, tick), reference[side])
        ]
        for side in ("chosen", "rejected")
    ]
    return sides[0], sides[1]


def _metrics(chosen: list[float], rejected: list[float]) -> dict[str, float]:
    n = max(len(chosen), 1)
    return {
        "reward_accuracy": sum(c > r for c, r in zip(chosen, rejected)) / n,
        "reward_margin": sum(c - r for c, r in zip(chosen, rejected)) / n,
        "chosen_reward": sum(chosen) / n,
        "rejected_reward": sum(rejected) / n,
    }


def evaluate_preference(ctx: EvalContext) -> dict[str, Any]:
    """The base as its own reference (reward 0) vs the tuned policy's implicit reward (and production's)."""
    task, rows, trust = ctx.task, ctx.rows, ctx.task.trust_remote_code
    beta, max_length, batch_size, tick = task.train.beta, task.train.max_length, task.eval.batch_size, ctx.tick
    tokenizer = sft.load_tokenizer(ctx.model_dir, trust)
    base = load_base("causal_lm", ctx.base_path, ctx.precision, [], trust)
    reference = {side: answer_logps(base, tokenizer, rows, side, max_length, batch_size, tick) for side in ("chosen", "rejected")}
    del base
    tuned = load_trained("causal_lm", ctx.model_dir, ctx.base_path, ctx.method, ctx.precision, [], trust)
    chosen, rejected = _rewards(tuned, reference, tokenizer, rows, beta, max_length, batch_size, tick)
    right = [float(c > r) for c, r in zip(chosen, rejected)]
    examples = [
        {
            "id": row["id"],
            "question": row["prompt"][-1]["content"],
            "chosen": row["chosen"][-1]["content"],
            "rejected": row["rejected"][-1]["content"],
            "chosen_reward": round(c, 4),
            "rejected_reward": round(r, 4),
            "score_base": 0.0,
            "score_tuned": ok,
        }
        for row, c, r, ok in zip(rows, chosen, rejected, right)
    ]
    result = {
        "base": _metrics([0.0] * len(rows), [0.0] * len(rows)),
        "tuned": _metrics(chosen, rejected),
        "intervals": {
            "reward_accuracy": paired_bootstrap(len(rows), mean_metric([0.0] * len(rows), right)),
            "reward_margin": paired_bootstrap(
                len(rows), mean_metric([0.0] * len(rows), [c - r for c, r in zip(chosen, rejected)])
            ),
        },
        "base_method": "the base is the reference policy: its reward is 0 for every answer",
        "example_metric": "chosen answer rewarded above the rejected one",
        "beta": beta,
        "examples": examples,
    }
    if ctx.production is not None:
        production = ctx.production
        prod = load_trained("causal_lm", production.path, production.base_model_path, production.method, ctx.precision, [], trust)
        result["production"] = _metrics(*_rewards(prod, reference, tokenizer, rows, beta, max_length, batch_size, tick))
    return result
