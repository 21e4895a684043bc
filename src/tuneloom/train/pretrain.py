"""Continued pre-training on raw domain text: causal LM loss on every token, documents cut into windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tuneloom.artifacts import DatasetManifest
from tuneloom.config import TaskConfig
from tuneloom.inference import load_tokenizer
from tuneloom.train import sft
from tuneloom.train.common import TaskParts, longest_example
from tuneloom.train.speed import attention_for


def encode_split(tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """Each document (plus end-of-text) cut into windows of at most max_length tokens: no text is dropped.

    Windows stay within one document, so no example attends across documents; packing then
    removes the padding by concatenating windows in a batch (see `sft.collator`).
    """
    out = []
    for row in rows:
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        for i in range(0, len(ids), max_length):
            window = ids[i : i + max_length]
            if len(window) > 1:  # a one-token window has nothing to predict
                out.append({"input_ids": window, "attention_mask": [1] * len(window), "labels": list(window)})
    return out


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    tokenizer = load_tokenizer(model_path, task.trust_remote_code)
    max_len = task.train.max_length
    train, val = encode_split(tokenizer, train_rows, max_len), encode_split(tokenizer, val_rows, max_len)
    model = sft.build_model(task, model_path, precision, attention_for(task, longest_example(manifest, task)))
    return TaskParts(tokenizer, model, train, val, sft.collator(tokenizer, task.packs))
