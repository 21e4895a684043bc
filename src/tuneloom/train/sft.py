"""Chat SFT: examples rendered with the model's chat template, loss on assistant tokens only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForSeq2Seq,
    DataCollatorWithFlattening,
    PreTrainedTokenizerBase,
)

from tuneloom import inference
from tuneloom.artifacts import DatasetManifest
from tuneloom.config import TaskConfig
from tuneloom.errors import ModelNotAvailable
from tuneloom.train.common import TaskParts, longest_example, lora_config
from tuneloom.train.speed import attention_for

IGNORE = -100


def load_tokenizer(model_path: Path | str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The inference tokenizer (see `tuneloom.inference.load_tokenizer`), which must have a chat template."""
    tokenizer = inference.load_tokenizer(model_path, trust_remote_code)
    if not tokenizer.chat_template:
        raise ModelNotAvailable(
            f"{model_path}: the tokenizer has no chat template, which chat_sft needs; "
            f"choose an instruct/chat model or add chat_template.jinja to the folder"
        )
    return tokenizer


def _template_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], **kwargs: Any) -> list[int]:
    """Token ids of `messages` rendered with the chat template (transformers types the result loosely)."""
    rendered: Any = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(rendered["input_ids"])


def encode_chat(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], max_length: int) -> dict[str, Any]:
    """input_ids and labels for a conversation; labels mask everything but assistant turns.

    Each assistant turn's tokens are found as the difference between the template rendered up to
    that turn's generation prompt and rendered through the turn, so multi-turn chats work too.
    """
    ids = _template_ids(tokenizer, messages)
    labels = [IGNORE] * len(ids)
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = len(_template_ids(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(_template_ids(tokenizer, messages[: i + 1]))
        while end > start and not str(tokenizer.decode(ids[end - 1 : end])).strip():
            end -= 1  # the template's line break after the end-of-turn token is not the model's to say
        labels[start:end] = ids[start:end]
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "truncated": truncated}


def encode_split(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], max_length: int
) -> tuple[list[dict[str, Any]], int, int]:
    """Encoded rows, how many were truncated, and how many were dropped for having no answer tokens left."""
    out, truncated, dropped = [], 0, 0
    for row in rows:
        enc = encode_chat(tokenizer, row["messages"], max_length)
        if all(label == IGNORE for label in enc["labels"]):
            dropped += 1
            continue
        truncated += enc.pop("truncated")
        out.append(enc)
    return out, truncated, dropped


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    tokenizer = load_tokenizer(model_path, task.trust_remote_code)
    train, truncated, dropped = encode_split(tokenizer, train_rows, task.train.max_length)
    val, _, _ = encode_split(tokenizer, val_rows, task.train.max_length)
    notes = (
        [f"{dropped} training examples had no answer tokens within max_length={task.train.max_length}: skipped"]
        if dropped
        else []
    )
    model = build_model(task, model_path, precision, attention_for(task, longest_example(manifest, task)))
    return TaskParts(
        tokenizer,
        model,
        train,
        val,
        collator(tokenizer, task.packs, answer_logits_only=not task.trust_remote_code),  # custom code may not take logits_to_keep
        truncated=truncated,
        notes=notes,
    )


def build_model(task: TaskConfig, model_path: Path, precision: str, attention: str | None = None) -> Any:
    """The base model (NF4 for QLoRA) with its adapter; `attention`: see `speed.attention_for` (None: transformers' default)."""
    dtype = inference.model_dtype(precision)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": task.trust_remote_code}
    if attention:
        kwargs["attn_implementation"] = attention
    if task.method.kind == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if task.method.kind == "full":
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if task.method.kind == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_4bit_layers_trainable_on_cpu(model)
    return get_peft_model(model, lora_config(task.method, "CAUSAL_LM"))


def keep_4bit_layers_trainable_on_cpu(model: torch.nn.Module) -> None:
    """Stop bitsandbytes repacking NF4 weights for CPU inference during validation.

    bitsandbytes (0.50) repacks a Linear4bit layer's weights for a faster CPU kernel the first
    time it runs in eval mode without gradients, and never unpacks them; later training steps then
    go through that kernel, which has no backward, so gradients to earlier layers are silently
    dropped. Training evaluates every N steps, so the repacking is turned off for training.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def collator(tokenizer: PreTrainedTokenizerBase, packing: bool = False, answer_logits_only: bool = False) -> Any:
    """Padded batches (length-grouped), or with `packing` one padding-free row per batch whose position ids
    restart per example; `answer_logits_only`: see `AnswerLogitsOnly`."""
    if packing:
        return PackedCollator()
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE, pad_to_multiple_of=8)
    return AnswerLogitsOnly(pad) if answer_logits_only else pad


class PackedCollator:
    """transformers' DataCollatorWithFlattening, plus `use_cache=False` in the batch.

    transformers turns position ids that restart into a block-diagonal causal mask (sdpa, eager
    and flash attention alike), so packed examples do not attend to each other; it only checks
    for them when the forward pass has no KV cache, and decoder models create one unless told not to.
    """

    def __init__(self) -> None:
        self.flatten = DataCollatorWithFlattening(separator_id=IGNORE)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.flatten(features), "use_cache": False}


class AnswerLogitsOnly:
    """Vocabulary logits only where the next token is an answer token: the loss is unchanged, the work is not.

    A causal LM computes logits over the whole vocabulary (49k for SmolLM2) at every position, and
    the loss then ignores every prompt, system and padding position. transformers' `logits_to_keep`
    accepts a boolean (batch, sequence) mask and the loss accepts ready-shifted `shift_labels`; the
    collator supplies both, so the output projection, the fp32 upcast and the cross-entropy run on
    the answer positions alone (the Trainer counts the loss normaliser from `shift_labels`).
    """

    def __init__(self, pad: DataCollatorForSeq2Seq) -> None:
        self.pad = pad

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.pad(features)
        shifted = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE)
        keep = shifted != IGNORE
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[keep]
        return batch
