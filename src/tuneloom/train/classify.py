"""Text classification: a sequence-classification head on an encoder or decoder model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from tuneloom.artifacts import DatasetManifest
from tuneloom.config import TaskConfig
from tuneloom.inference import classifier_head, load_tokenizer
from tuneloom.pooled_head import build_pooled, encoder_pooling, save_pooled
from tuneloom.train.common import TaskParts, lora_config
from tuneloom.train.setfit import fit_head


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    """The parts of `train.recipe` (head, setfit, or the best of them on validation for auto)."""
    from tuneloom.train.recipes import recipe_parts, select_recipe

    recipe: str = task.train.recipe
    choice = None
    if recipe == "auto":
        choice = select_recipe(task, model_path, precision, manifest.labels, train_rows, val_rows)
        recipe = choice.chosen
    parts = recipe_parts(recipe, task, model_path, precision, manifest.labels, train_rows, val_rows)
    parts.recipes = choice
    return parts


def head_parts(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    labels: list[str],
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    """The head recipe: cross-entropy on a head over the encoder's pooling (see `head_pooling`); on pooled
    embeddings the head starts as the logistic regression on the frozen encoder's embeddings (single-label)."""
    tokenizer = load_tokenizer(model_path, task.trust_remote_code)
    train, truncated = encode_split(tokenizer, train_rows, labels, task.train.max_length)
    val, _ = encode_split(tokenizer, val_rows, labels, task.train.max_length)
    multi = task.data.multi_label
    loss = balanced_loss(labels, train_rows) if task.train.class_weights == "balanced" and not multi else None
    pooling = head_pooling(task, model_path)
    if pooling is None:
        model, save = build_model(task, model_path, labels, tokenizer.pad_token_id), None
    else:
        model, save = pooled_model(task, model_path, labels, pooling, "head"), save_pooled
        if not multi:  # start from the linear probe (LP-FT): a random head on unit-norm embeddings learns slowly
            fit_head(model, tokenizer, train, val, task.train.seed)
    parts = TaskParts(tokenizer, model, train, val, collator(tokenizer), loss_func=loss, truncated=truncated, save=save)
    if pooling is None and encoder_pooling(model_path) is not None:
        parts.notes.append("method.merge: the head sits on the model's own pooler, not the sentence-transformers pooling")
    return parts


def head_pooling(task: TaskConfig, model_path: Path) -> tuple[str, bool] | None:
    """(pooling, normalize) of a sentence-transformers encoder, for a head on its pooled embeddings; None (the
    model's own pooler, e.g. BERT's CLS) for other models, and with method.merge (a merged model is one
    transformers model)."""
    return None if task.method.merge else encoder_pooling(model_path)


def pooled_model(task: TaskConfig, model_path: Path, labels: list[str], pooling: tuple[str, bool], recipe: str) -> Any:
    """A `PooledClassifier`; with an adapter method, LoRA on the encoder and the head trained whole."""
    model = build_pooled(model_path, labels, pooling, task.trust_remote_code, task.data.multi_label)
    model.recipe = recipe
    if task.method.kind != "full":
        from peft import get_peft_model

        model.encoder = get_peft_model(model.encoder, lora_config(task.method, "FEATURE_EXTRACTION"))
    return model


def encode_split(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], labels: list[str], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """Token ids and the target: a class index, or for multi-label rows (`labels`) a multi-hot float vector."""
    index = {label: i for i, label in enumerate(labels)}
    out, truncated = [], 0
    for row in rows:
        enc = tokenizer(row["text"], truncation=False)
        ids = enc["input_ids"]
        if len(ids) > max_length:
            truncated += 1
            # keep the head and the final special token (e.g. BERT's [SEP])
            ids = ids[: max_length - 1] + ids[-1:] if tokenizer.sep_token_id == ids[-1] else ids[:max_length]
        if "labels" in row:
            target: Any = [0.0] * len(labels)
            for label in row["labels"]:
                target[index[label]] = 1.0
        else:
            target = index[row["label"]]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target})
    return out, truncated


def build_model(task: TaskConfig, model_path: Path, labels: list[str], pad_token_id: int) -> Any:
    # Small heads and adapters train badly in pure bf16: keep fp32 weights, autocast does the rest.
    model = classifier_head(model_path, labels, task.trust_remote_code, task.data.multi_label, pad_token_id)
    if task.method.kind == "full":
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config(task.method, "SEQ_CLS"))


def balanced_loss(labels: list[str], train_rows: list[dict[str, Any]]) -> Callable[..., torch.Tensor]:
    """Cross-entropy weighted by inverse class frequency, as a Trainer `compute_loss_func`."""
    counts = Counter(r["label"] for r in train_rows)
    weights = torch.tensor([len(train_rows) / (len(labels) * max(counts[c], 1)) for c in labels])

    def loss(outputs: Any, target: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs.logits.float()
        total = torch.nn.functional.cross_entropy(logits, target, weight=weights.to(logits.device), reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else target.numel())

    return loss


def collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
