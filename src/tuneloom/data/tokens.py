"""Token lengths with the task model's tokenizer, against train.max_length and the model's context window.

Chat and preference examples are rendered through the model's chat template, as training does;
for chat the prompt part is measured too, so an example whose answer would be cut off entirely
by truncation is found here rather than silently dropped in training. NER spans are checked
against the tokenizer's offsets (BIO tags are derived from them at training time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tuneloom.config import TaskConfig
from tuneloom.errors import TuneloomError


def load_tokenizer(task: TaskConfig) -> tuple[Any | None, int | None, str | None]:
    """(tokenizer, context window, reason it is unavailable); never downloads."""
    from tuneloom.catalog import resolve_model

    try:
        folder = resolve_model(task.model, task.trust_remote_code)
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=task.trust_remote_code)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=task.trust_remote_code)
    except (TuneloomError, OSError, ValueError) as exc:
        return None, None, f"tokenizer of '{task.model}' not available offline ({str(exc).splitlines()[0]})"
    window = getattr(config, "max_position_embeddings", None) or (
        tokenizer.model_max_length if tokenizer.model_max_length < 10**7 else None
    )
    return tokenizer, window, None


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> int:
    if tokenizer.chat_template:
        return len(
            tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt)[
                "input_ids"
            ]
        )
    return len(tokenizer("\n".join(m["content"] for m in messages))["input_ids"])


def measure_texts(examples: list[dict[str, Any]], tokenizer: Any) -> None:
    """`_tokens` of each example's `text`."""
    lengths = tokenizer([e["text"] for e in examples])["input_ids"]
    for e, ids in zip(examples, lengths):
        e["_tokens"] = len(ids)


def measure_spans(examples: list[dict[str, Any]], tokenizer: Any) -> None:
    """`_tokens` of each text, and `_misaligned`: entity spans not on token boundaries."""
    enc = tokenizer([e["text"] for e in examples], return_offsets_mapping=True)
    for e, ids, offsets in zip(examples, enc["input_ids"], enc["offset_mapping"]):
        e["_tokens"] = len(ids)
        starts = {a for a, b in offsets if b > a}
        ends = {b for a, b in offsets if b > a}
        e["_misaligned"] = sum(1 for s in e["entities"] if s["start"] not in starts or s["end"] not in ends)


def measure_chat(examples: list[dict[str, Any]], tokenizer: Any) -> None:
    """`_tokens` of each conversation and `_prompt_tokens` up to its last answer."""
    for e in examples:
        e["_tokens"] = _chat_ids(tokenizer, e["messages"])
        last = max(i for i, m in enumerate(e["messages"]) if m["role"] == "assistant")
        e["_prompt_tokens"] = _chat_ids(tokenizer, e["messages"][:last], generation_prompt=True)


def measure_pairs(examples: list[dict[str, Any]], tokenizer: Any) -> None:
    """`_prompt_tokens` of each prompt and `_tokens` of its longer answer pair."""
    for e in examples:
        e["_prompt_tokens"] = _chat_ids(tokenizer, e["prompt"], generation_prompt=True)
        e["_tokens"] = max(_chat_ids(tokenizer, e["prompt"] + e[k]) for k in ("chosen", "rejected"))


def over_length(example: dict[str, Any], max_length: int) -> bool:
    """True when training would truncate the example (for chat: its prompt alone fills max_length)."""
    if "_prompt_tokens" in example and example["_prompt_tokens"] >= max_length:
        return True
    return example.get("_tokens", 0) > max_length


def summary(examples: list[dict[str, Any]], max_length: int, window: int | None) -> dict[str, Any]:
    lengths = np.array([e["_tokens"] for e in examples]) if examples else np.zeros(0)
    out: dict[str, Any] = {"n": int(len(lengths)), "max_length": max_length, "context_window": window}
    if len(lengths):
        out.update(
            mean=round(float(lengths.mean()), 1),
            p50=int(np.percentile(lengths, 50)),
            p95=int(np.percentile(lengths, 95)),
            max=int(lengths.max()),
            over_max_length=int(sum(over_length(e, max_length) for e in examples)),
        )
    if any("_misaligned" in e for e in examples):
        out["misaligned_entities"] = int(sum(e.get("_misaligned", 0) for e in examples))
    return out
