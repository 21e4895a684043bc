"""Token classification (NER): BIO tags derived from character spans with the tokenizer's offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from tuneloom import inference
from tuneloom.artifacts import DatasetManifest
from tuneloom.config import TaskConfig
from tuneloom.errors import ModelNotAvailable
from tuneloom.train.common import TaskParts, lora_config

IGNORE = -100


def tag_names(entity_types: list[str]) -> list[str]:
    """IOB2 tag set: O, then B- and I- for each entity type."""
    return ["O", *(f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I"))]


def load_tokenizer(model_path: Path | str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The inference tokenizer (see `tuneloom.inference.load_tokenizer`), which must be a fast one."""
    tokenizer = inference.load_tokenizer(model_path, trust_remote_code)
    if not tokenizer.is_fast:
        raise ModelNotAvailable(f"{model_path}: ner needs a fast tokenizer (tokenizer.json) for character offsets")
    return tokenizer


def encode_row(tokenizer: PreTrainedTokenizerBase, row: dict[str, Any], tags: list[str], max_length: int) -> dict[str, Any]:
    """input_ids and one tag index per token; special tokens get IGNORE.

    A token belongs to an entity when their character ranges overlap (a leading space in a
    token's offsets does not matter); the entity's first such token is B-, the rest I-.
    """
    index = {t: i for i, t in enumerate(tags)}
    enc = tokenizer(row["text"], return_offsets_mapping=True, truncation=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    truncated = len(ids) > max_length
    if truncated:
        keep_last = ids[-1] == tokenizer.sep_token_id and tokenizer.sep_token_id is not None
        ids = ids[: max_length - 1] + ids[-1:] if keep_last else ids[:max_length]
        offsets = offsets[: max_length - 1] + offsets[-1:] if keep_last else offsets[:max_length]
    special = set(tokenizer.all_special_ids)
    labels, entities, e, seen = [], row.get("entities", []), 0, set()
    for tok, (start, end) in zip(ids, offsets):
        if tok in special or start == end:
            labels.append(IGNORE)
            continue
        while e < len(entities) and entities[e]["end"] <= start:
            e += 1
        if e < len(entities) and start < entities[e]["end"] and end > entities[e]["start"]:
            prefix = "I" if e in seen else "B"
            seen.add(e)
            labels.append(index[f"{prefix}-{entities[e]['label']}"])
        else:
            labels.append(index["O"])
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "truncated": truncated}


def encode_split(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], tags: list[str], max_length: int
) -> tuple[list[dict[str, Any]], int]:
    out, truncated = [], 0
    for row in rows:
        enc = encode_row(tokenizer, row, tags, max_length)
        truncated += enc.pop("truncated")
        out.append(enc)
    return out, truncated


def build_model(task: TaskConfig, model_path: Path | str, tags: list[str], pad_token_id: int) -> Any:
    # fp32 weights like classification: a fresh head trains badly in pure bf16
    model = inference.tagger_head(model_path, tags, task.trust_remote_code, pad_token_id)
    if task.method.kind == "full":
        return model
    from peft import get_peft_model

    # peft trains the tagging head whole (modules_to_save); all-linear must not also put an adapter on it
    return get_peft_model(model, lora_config(task.method, "TOKEN_CLS", exclude=["classifier", "score"]))


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    tags = tag_names(manifest.labels)
    tokenizer = load_tokenizer(model_path, task.trust_remote_code)
    train, truncated = encode_split(tokenizer, train_rows, tags, task.train.max_length)
    val, _ = encode_split(tokenizer, val_rows, tags, task.train.max_length)
    model = build_model(task, model_path, tags, tokenizer.pad_token_id)
    return TaskParts(tokenizer, model, train, val, collator(tokenizer), truncated=truncated)


def collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForTokenClassification:
    return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=8)
