"""Preference tuning with TRL: DPO on chosen/rejected pairs, or KTO on the same pairs unpaired.

With an adapter the reference policy is the base model itself (TRL keeps a frozen copy of the
fresh adapter), so no second model is loaded; full fine-tuning keeps a frozen copy of the base.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tuneloom.artifacts import DatasetManifest
from tuneloom.config import TaskConfig
from tuneloom.train import sft
from tuneloom.train.common import TaskParts, longest_example
from tuneloom.train.speed import attention_for

REFERENCE_ADAPTER = "ref"  # the frozen copy TRL's DPOTrainer adds next to the trained adapter


def pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL's conversational preference rows (prompt, chosen, rejected), without our bookkeeping columns."""
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def unpaired(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """KTO's format: each pair becomes a desirable (chosen) and an undesirable (rejected) completion.

    The same as `trl.data_utils.unpair_preference_dataset`, on plain rows before they become a
    Dataset, then shuffled once with the run's seed: KTO reads its data in order (its KL term pairs
    each completion with its batch neighbour's prompt), so the shuffle happens here. Rows that are
    unpaired already (KTO rows made from a bare rating of a served answer) pass as they are.
    """
    out = []
    for r in rows:
        if "completion" in r:
            out.append({"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])})
            continue
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    random.Random(seed).shuffle(out)
    return out


def drop_reference_adapter(model: Any) -> None:
    """Save only the trained adapter: the frozen reference copy is the untrained adapter (the base)."""
    config = getattr(model, "peft_config", None)
    if config and REFERENCE_ADAPTER in config:
        model.delete_adapter(REFERENCE_ADAPTER)


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    tokenizer = sft.load_tokenizer(model_path, task.trust_remote_code)  # prompts go through the chat template
    model = sft.build_model(task, model_path, precision, attention_for(task, longest_example(manifest, task)))
    cfg = task.train
    # TRL tokenizes the rows itself (no input_ids column to group lengths by)
    common = {"beta": cfg.beta, "max_length": cfg.max_length, "train_sampling_strategy": "random"}
    if cfg.preference_loss == "kto":
        from trl import KTOConfig, KTOTrainer

        train, val = unpaired(train_rows, cfg.seed), unpaired(val_rows, cfg.seed)
        return TaskParts(
            tokenizer,
            model,
            train,
            val,
            trainer_class=KTOTrainer,
            args_class=KTOConfig,
            extra_args={**common, "train_sampling_strategy": "sequential"},
            before_save=drop_reference_adapter,
        )
    from trl import DPOConfig, DPOTrainer

    return TaskParts(
        tokenizer,
        model,
        pairs(train_rows),
        pairs(val_rows),
        trainer_class=DPOTrainer,
        args_class=DPOConfig,
        extra_args=common,
        before_save=drop_reference_adapter,
    )
