"""Chat SFT evaluation: answer-token loss and generated answers, base vs tuned, on the test split."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tuneloom.evaluate.metrics import mean_scores, per_example_scores
from tuneloom.evaluate.rag import Scored, retrieval_comparison
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap, ratio_metric
from tuneloom.inference import load_base, load_trained
from tuneloom.knowledge.raft import in_prompt
from tuneloom.train import sft

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext


@torch.inference_mode()
def answer_losses(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch_size: int
) -> list[tuple[float, int]]:
    """Per example: (summed negative log-likelihood, number) of its reference answer tokens."""
    encoded, _, _ = sft.encode_split(tokenizer, rows, max_length)
    collate = sft.collator(tokenizer)
    out: list[tuple[float, int]] = []
    for i in range(0, len(encoded), batch_size):
        batch = collate([dict(e) for e in encoded[i : i + batch_size]])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        targets = batch["labels"][:, 1:]
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=sft.IGNORE, reduction="none"
        )
        counts = (targets != sft.IGNORE).sum(1)
        out += [(float(s), int(c)) for s, c in zip(losses.sum(1).tolist(), counts.tolist())]
    return out


@torch.inference_mode()
def generate_answers(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_new_tokens: int, batch_size: int, tick: Callable[[int], None]
) -> tuple[list[str], int, float]:
    """Greedy answers to each row's conversation minus its last assistant turn; (answers, new tokens, seconds).

    Pads on the left while generating; the tokenizer's padding side is restored afterwards.
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        return _generate(model, tokenizer, rows, max_new_tokens, batch_size, tick)
    finally:
        tokenizer.padding_side = side


def _generate(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_new_tokens: int, batch_size: int, tick: Callable[[int], None]
) -> tuple[list[str], int, float]:
    answers: list[str] = []
    new_tokens, started = 0, time.time()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        prompts = [tokenizer.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False) for r in chunk]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        gen = out[:, batch["input_ids"].shape[1] :]
        for seq in gen:
            seq = seq[seq != tokenizer.pad_token_id]
            new_tokens += len(seq)
            answers.append(tokenizer.decode(seq, skip_special_tokens=True).strip())
        tick(len(chunk))
    return answers, new_tokens, time.time() - started


def score_model(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_length: int,
    max_new_tokens: int,
    batch_size: int,
    tick: Callable[[int], None],
) -> tuple[dict[str, float], list[str], dict[str, list[Any]]]:
    losses = answer_losses(model, tokenizer, rows, max_length, batch_size)
    answers, tokens, seconds = generate_answers(model, tokenizer, rows, max_new_tokens, batch_size, tick)
    refs = [r["messages"][-1]["content"] for r in rows]
    loss = sum(s for s, _ in losses) / max(sum(c for _, c in losses), 1)
    scores = per_example_scores(answers, refs)
    per_example: dict[str, list[Any]] = {"answer_nll": losses, **scores}
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), **mean_scores(scores)}
    metrics["gen_tokens_per_s"] = tokens / max(seconds, 1e-9)
    metrics["latency_ms_per_example"] = 1000 * seconds / max(len(rows), 1)
    return metrics, answers, per_example


def _intervals(a: dict[str, list[Any]], b: dict[str, list[Any]], n: int) -> dict[str, tuple[float, float]]:
    return {
        "loss": paired_bootstrap(n, ratio_metric(a["answer_nll"], b["answer_nll"])),
        **{k: paired_bootstrap(n, mean_metric(a[k], b[k])) for k in ("rouge_l", "token_f1", "exact_match")},
    }


def evaluate_chat(ctx: EvalContext) -> dict[str, Any]:
    """Base, tuned and (when given) the production version, scored on the same rows.

    `ctx.general`: the general-ability rows of the forgetting check, scored for base and tuned too.
    Tasks with a knowledge base: each model also answers with its rows' retrieved passages in the prompt
    (`retrieval`, see `tuneloom.evaluate.rag`).
    """
    task, rows, general = ctx.task, ctx.rows, ctx.general
    tokenizer = sft.load_tokenizer(ctx.model_dir, task.trust_remote_code)
    rag_rows = in_prompt(rows, task.rag.passage_chars) if task.knowledge else None

    def score(model: Any, on: list[dict[str, Any]]) -> Scored:
        return score_model(model, tokenizer, on, task.train.max_length, task.eval.max_new_tokens, task.eval.batch_size, ctx.tick)

    def sides(name: str, model: Any) -> dict[str, Scored]:
        out = {name: score(model, rows)}
        if rag_rows is not None:
            out[f"{name}+retrieval"] = score(model, rag_rows)
        if general and name != "production":
            out[f"{name}:general"] = score(model, general)
        return out

    scored = sides("base", load_base("causal_lm", ctx.base_path, ctx.precision, [], task.trust_remote_code))
    tuned = load_trained("causal_lm", ctx.model_dir, ctx.base_path, ctx.method, ctx.precision, [], task.trust_remote_code)
    scored |= sides("tuned", tuned)
    del tuned
    if ctx.production is not None:
        prod = ctx.production
        model = load_trained("causal_lm", prod.path, prod.base_model_path, prod.method, ctx.precision, [], task.trust_remote_code)
        scored |= sides("production", model)
        del model
    return _chat_result(ctx, scored)


def _chat_result(ctx: EvalContext, scored: dict[str, Scored]) -> dict[str, Any]:
    """eval.json's chat sections from every scored side."""
    rows, (base_metrics, base_answers, base_each), (tuned_metrics, tuned_answers, tuned_each) = (
        ctx.rows,
        scored["base"],
        scored["tuned"],
    )
    examples = [
        {
            "id": r["id"],
            "question": r["messages"][-2]["content"],
            "reference": r["messages"][-1]["content"],
            "base": b,
            "tuned": t,
            "token_f1_base": round(fb, 4),
            "token_f1_tuned": round(ft, 4),
        }
        for r, b, t, fb, ft in zip(rows, base_answers, tuned_answers, base_each["token_f1"], tuned_each["token_f1"])
    ]
    result = {
        "base": base_metrics,
        "tuned": tuned_metrics,
        "examples": examples,
        "intervals": _intervals(base_each, tuned_each, len(rows)),
    }
    if ctx.general and "base:general" in scored:
        result["forgetting"] = _forgetting(ctx.general, scored["base:general"], scored["tuned:general"])
    if "production" in scored:
        prod_metrics, prod_answers, prod_each = scored["production"]
        for e, a in zip(examples, prod_answers):
            e["production"] = a
        result.update(production=prod_metrics, intervals_production=_intervals(prod_each, tuned_each, len(rows)))
    if ctx.task.knowledge:
        with_rag = {k: v for k, v in scored.items() if ":" not in k}
        result["retrieval"] = retrieval_comparison(ctx.task, rows, with_rag).model_dump(mode="json")
    return result


def _forgetting(general: list[dict[str, Any]], base: Scored, tuned: Scored) -> dict[str, Any]:
    """The forgetting check's section: base and tuned scores on the general-ability set, and the drops."""
    return {
        "n": len(general),
        "base": base[0],
        "tuned": tuned[0],
        "token_f1_drop": base[0]["token_f1"] - tuned[0]["token_f1"],
        "rouge_l_drop": base[0]["rouge_l"] - tuned[0]["rouge_l"],
        "examples": [
            {
                "id": r["id"],
                "category": r.get("category"),
                "question": r["messages"][-2]["content"],
                "reference": r["messages"][-1]["content"],
                "base": b,
                "tuned": t,
            }
            for r, b, t in zip(general, base[1], tuned[1])
        ],
    }
