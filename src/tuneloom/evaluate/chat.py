"""Chat SFT evaluation: answer-token loss and generated answers, base vs tuned, on the test split."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from tuneloom.evaluate.metrics import mean_scores, per_example_scores
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap, ratio_metric
from tuneloom.train import sft


@torch.inference_mode()
def answer_losses(model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, batch_size: int) -> list[tuple[float, int]]:
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
    """Greedy answers to each row's conversation minus its last assistant turn; (answers, new tokens, seconds)."""
    tokenizer.padding_side = "left"
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
    tokenizer.padding_side = "right"
    return answers, new_tokens, time.time() - started


def score_model(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int, max_new_tokens: int, batch_size: int, tick: Callable[[int], None]
) -> tuple[dict[str, float], list[str], dict[str, list[Any]]]:
    losses = answer_losses(model, tokenizer, rows, max_length, batch_size)
    answers, tokens, seconds = generate_answers(model, tokenizer, rows, max_new_tokens, batch_size, tick)
    refs = [r["messages"][-1]["content"] for r in rows]
    loss = sum(s for s, _ in losses) / max(sum(c for _, c in losses), 1)
    scores = per_example_scores(answers, refs)
    per_example = {"answer_nll": losses, **scores}
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), **mean_scores(scores)}
    metrics["gen_tokens_per_s"] = tokens / max(seconds, 1e-9)
    metrics["latency_ms_per_example"] = 1000 * seconds / max(len(rows), 1)
    return metrics, answers, per_example


def load_tuned(model_dir: Path, base_path: Path, method: str, dtype: torch.dtype, trust_remote_code: bool) -> Any:
    """A trained model: full weights, or the base with its LoRA adapter (QLoRA adapters load on a bf16/fp32 base)."""
    from transformers import AutoModelForCausalLM

    if method == "full":
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, trust_remote_code=trust_remote_code).eval()
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, model_dir).eval()


def _intervals(a: dict[str, list[Any]], b: dict[str, list[Any]], n: int) -> dict[str, tuple[float, float]]:
    return {
        "loss": paired_bootstrap(n, ratio_metric(a["answer_nll"], b["answer_nll"])),
        **{k: paired_bootstrap(n, mean_metric(a[k], b[k])) for k in ("rouge_l", "token_f1", "exact_match")},
    }


def evaluate_chat(
    model_dir: Path, base_path: Path, method: str, precision: str, rows: list[dict[str, Any]],
    max_length: int, max_new_tokens: int, batch_size: int, trust_remote_code: bool, tick: Callable[[int], None],
    production: Any = None, general: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Base, tuned and (when given) the production version, scored on the same rows.

    `general`: the general-ability rows of the forgetting check, scored for base and tuned too.
    """
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = sft.load_tokenizer(model_dir, trust_remote_code)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, trust_remote_code=trust_remote_code).eval()
    base_metrics, base_answers, base_each = score_model(base, tokenizer, rows, max_length, max_new_tokens, batch_size, tick)
    general_base = score_model(base, tokenizer, general, max_length, max_new_tokens, batch_size, tick) if general else None
    del base
    tuned = load_tuned(model_dir, base_path, method, dtype, trust_remote_code)
    tuned_metrics, tuned_answers, tuned_each = score_model(tuned, tokenizer, rows, max_length, max_new_tokens, batch_size, tick)
    general_tuned = score_model(tuned, tokenizer, general, max_length, max_new_tokens, batch_size, tick) if general else None
    del tuned
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
    result = {"base": base_metrics, "tuned": tuned_metrics, "examples": examples,
              "intervals": _intervals(base_each, tuned_each, len(rows))}
    if general_base and general_tuned:
        result["forgetting"] = {
            "n": len(general),
            "base": general_base[0],
            "tuned": general_tuned[0],
            "token_f1_drop": general_base[0]["token_f1"] - general_tuned[0]["token_f1"],
            "rouge_l_drop": general_base[0]["rouge_l"] - general_tuned[0]["rouge_l"],
            "examples": [
                {"id": r["id"], "category": r.get("category"), "question": r["messages"][-2]["content"],
                 "reference": r["messages"][-1]["content"], "base": b, "tuned": t}
                for r, b, t in zip(general, general_base[1], general_tuned[1])
            ],
        }
    if production is not None:
        model = load_tuned(production.path, Path(production.base_model_path), production.method, dtype, trust_remote_code)
        prod_metrics, prod_answers, prod_each = score_model(model, tokenizer, rows, max_length, max_new_tokens, batch_size, tick)
        for e, a in zip(examples, prod_answers):
            e["production"] = a
        result.update(production=prod_metrics, intervals_production=_intervals(prod_each, tuned_each, len(rows)))
    return result
