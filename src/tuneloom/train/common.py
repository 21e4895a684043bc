"""Pieces every training task shares: precision, PEFT config, Trainer arguments, run logging."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from tuneloom.artifacts import DatasetManifest
from tuneloom.config import MethodConfig, TaskConfig
from tuneloom.errors import ProjectFileError
from tuneloom.workspace import append_jsonl


@dataclass
class TaskParts:
    """What a task module (sft, classify, ner, preference, pretrain) hands the shared training loop."""

    tokenizer: Any
    model: Any
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    collator: Any = None
    loss_func: Any = None
    truncated: int = 0
    notes: list[str] = field(default_factory=list)
    trainer_class: type = Trainer
    args_class: type = TrainingArguments
    extra_args: dict[str, Any] = field(default_factory=dict)
    before_save: Callable[[Any], object] | None = None  # may return the classifier to save (setfit's head)
    save: Callable[[Any, Path], object] | None = None  # writes model/ itself (else the Trainer's save_model)
    recipes: Any = None  # the RecipeChoice of train.recipe: auto


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(requested: str) -> str:
    """'bf16' where the GPU or CPU computes it natively, else 'fp32'; an explicit choice is checked."""
    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_supports_bf16()
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        raise ProjectFileError("train.precision is bf16 but this hardware has no native bf16; use 'auto' or 'fp32'")
    return requested


def lora_config(method: MethodConfig, task_type: str, exclude: list[str] | None = None) -> Any:
    """peft's LoraConfig; `exclude` names modules never adapted (a head that is trained whole instead)."""
    from peft import LoraConfig

    return LoraConfig(
        exclude_modules=exclude,
        task_type=task_type,
        r=method.r,
        lora_alpha=method.alpha,  # type: ignore[arg-type]  # peft annotates int; a float alpha scales the same way
        lora_dropout=method.dropout,
        target_modules=method.target_modules,
        use_dora=method.kind == "dora",
        use_rslora=method.rslora,
    )


def save_merged(model: Any, out_dir: Path) -> Path:
    """The base with the adapter folded into its weights, saved as safetensors (a plain transformers model)."""
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def longest_example(manifest: DatasetManifest, task: TaskConfig) -> int:
    """The longest training example in tokens, from data prep's statistics (batches pad to it); else max_length."""
    stats = (manifest.tokens or {}).get("train") or {}
    return min(task.train.max_length, int(stats.get("max", task.train.max_length)))


def training_kwargs(task: TaskConfig, run_dir: Path, n_train: int, precision: str, has_validation: bool = True) -> dict[str, Any]:
    """Trainer arguments from the project file; also fed to TRL's configs (which extend TrainingArguments)."""
    cfg = task.train
    batch = min(cfg.batch_size, max(1, n_train))  # a batch cannot hold more examples than there are
    steps_per_epoch = max(1, math.ceil(n_train / (batch * cfg.grad_accum)))
    total = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    eval_every = cfg.eval_every or (cfg.save_every if cfg.keep_best or cfg.early_stopping_patience else None)
    eval_every = eval_every or max(1, total // 6)
    pick_best = has_validation and (cfg.keep_best or cfg.early_stopping_patience is not None)
    return dict(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        gradient_accumulation_steps=cfg.grad_accum,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 reads a value below 1 as a share of the total steps
        lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay,
        bf16=precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_every,
        logging_steps=max(1, min(10, eval_every)),
        save_strategy="steps",
        save_steps=cfg.save_every or eval_every,
        save_total_limit=cfg.keep_checkpoints,
        load_best_model_at_end=pick_best and cfg.keep_best,
        metric_for_best_model="eval_loss" if pick_best else None,
        greater_is_better=False if pick_best else None,
        report_to="none",
        disable_tqdm=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # LoRA and full models use every trainable parameter
    )


def stopping_callbacks(task: TaskConfig, has_validation: bool) -> list[TrainerCallback]:
    """Early stopping on validation loss when the project file asks for it (needs a validation split)."""
    cfg = task.train
    if cfg.early_stopping_patience is None or not has_validation:
        return []
    return [EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)]


class RunLogger(TrainerCallback):
    """Writes every log line to metrics.jsonl and drives a Rich progress bar with tokens/s."""

    def __init__(self, run_dir: Path, title: str, console: Console | None = None) -> None:
        self.metrics = run_dir / "metrics.jsonl"
        self.title = title
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.bar: Any = None
        self.started = 0.0
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # Trainer callback API
        self.started = time.time()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.bar = self.progress.add_task(self.title, total=state.max_steps, stats="")

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = max(time.time() - self.started, 1e-9)
        loss = f"loss {self.last_loss:.3f} " if self.last_loss is not None else ""
        stats = f"{loss}{state.num_input_tokens_seen / elapsed:.0f} tok/s"
        if self.progress:
            self.progress.update(self.bar, completed=state.global_step, stats=stats)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time_s": round(time.time() - self.started, 2)}
        row["tokens"] = int(state.num_input_tokens_seen)
        row.update({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in logs.items()})
        append_jsonl(self.metrics, row)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.update(self.bar, completed=state.global_step)
            self.progress.stop()
