"""`train_task`: one task's dataset and base model become a tuned model in a run folder."""

from __future__ import annotations

import json
import platform
import signal
import threading
import time
from pathlib import Path
from typing import Any

from datasets import Dataset
from rich.console import Console
from transformers import PrinterCallback, Trainer, set_seed

from tuneloom.catalog import resolve_model
from tuneloom.config import Project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.train import classify, sft
from tuneloom.train.memory import check_training_memory
from tuneloom.train.common import RunLogger, TrainResult, choose_precision, count_parameters, training_arguments
from tuneloom.workspace import Workspace, set_status, write_json_atomic

__all__ = ["TrainResult", "train_task"]


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def train_task(
    project: Project, task_name: str | None = None, dataset_dir: str | Path | None = None, console: Console | None = None
) -> TrainResult:
    """Train one task of the project; prepares its data first when no dataset version exists."""
    console = console or Console(stderr=True)
    task = project.config.task(task_name)
    ws = Workspace(project.workspace)
    if dataset_dir is None:  # the version matching the current data settings (reused when unchanged)
        dataset_dir = Path(prepare_dataset(project, task.name).path)
    dataset_dir = Path(dataset_dir)
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    model_path = resolve_model(task.model, task.trust_remote_code)
    precision = choose_precision(task.train.precision)
    snapshot = {
        "project": project.config.project,
        "project_file": str(project.path),
        "task": task.model_dump(mode="json"),
        "dataset": {"path": str(dataset_dir), "version": manifest["result"]["version"]},
        "base_model_path": str(model_path),
        "precision": precision,
        "versions": _versions(),
    }
    run = ws.new_run(task.name, snapshot)
    console.print(f"[bold]{task.name}[/]: {task.method.kind} on {task.model} ({precision}), run {run.name}")
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        result = _fit(task, dataset_dir, manifest, model_path, run, precision, console)
    except KeyboardInterrupt:
        set_status(run, "interrupted", error="stopped by a signal before the end")
        raise
    except BaseException as exc:
        set_status(run, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    write_json_atomic(run / "summary.json", {"train": result.model_dump()})
    set_status(run, "completed")
    return result


def _fit(task, dataset_dir: Path, manifest: dict[str, Any], model_path: Path, run: Path, precision: str, console: Console) -> TrainResult:  # noqa: ANN001
    set_seed(task.train.seed)
    train_rows, val_rows = load_split(dataset_dir, "train"), load_split(dataset_dir, "validation")
    max_len = task.train.max_length
    loss_func = None
    if task.type == "chat_sft":
        tokenizer = sft.load_tokenizer(model_path, task.trust_remote_code)
        train_enc, truncated, dropped = sft.encode_split(tokenizer, train_rows, max_len)
        val_enc, _, _ = sft.encode_split(tokenizer, val_rows, max_len)
        if dropped:
            console.print(f"[yellow]{dropped} training examples had no answer tokens within max_length={max_len}: skipped")
        check_training_memory(task, model_path, precision, longest=max((len(e["input_ids"]) for e in train_enc), default=max_len))
        model = sft.build_model(task, model_path, precision)
        collate = sft.collator(tokenizer)
    else:
        labels = manifest["result"]["labels"]
        tokenizer = classify.load_tokenizer(model_path, task.trust_remote_code)
        train_enc, truncated = classify.encode_split(tokenizer, train_rows, labels, max_len)
        val_enc, _ = classify.encode_split(tokenizer, val_rows, labels, max_len)
        check_training_memory(task, model_path, precision, len(labels), max((len(e["input_ids"]) for e in train_enc), default=max_len))
        model = classify.build_model(task, model_path, labels, tokenizer.pad_token_id)
        collate = classify.collator(tokenizer)
        if task.train.class_weights == "balanced":
            loss_func = classify.balanced_loss(labels, train_rows)
    if truncated:
        console.print(f"[yellow]{truncated} training examples were longer than max_length={max_len} and were truncated")
    trainable, total = count_parameters(model)
    args = training_arguments(task, run, len(train_enc), precision, has_validation=bool(val_enc))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_enc),
        eval_dataset=Dataset.from_list(val_enc) if val_enc else None,
        data_collator=collate,
        processing_class=tokenizer,
        callbacks=[RunLogger(run, task.name, console)],
        compute_loss_func=loss_func,
    )
    trainer.remove_callback(PrinterCallback)  # RunLogger prints progress and writes metrics.jsonl instead
    started = time.time()
    output = trainer.train()
    seconds = time.time() - started
    eval_loss = trainer.evaluate()["eval_loss"] if val_enc else None
    model_dir = run / "model"
    trainer.save_model(str(model_dir))  # adapter only for LoRA/QLoRA, full weights otherwise; safetensors
    tokenizer.save_pretrained(model_dir)
    tokens = int(trainer.state.num_input_tokens_seen)
    return TrainResult(
        task=task.name,
        run_dir=str(run),
        model_dir=str(model_dir),
        dataset=str(dataset_dir),
        method=task.method.kind,
        precision=precision,
        steps=trainer.state.global_step,
        epochs=round(trainer.state.epoch or 0.0, 3),
        train_loss=output.training_loss,
        eval_loss=eval_loss,
        seconds=round(seconds, 2),
        tokens=tokens,
        tokens_per_s=round(tokens / max(seconds, 1e-9), 1),
        trainable_parameters=trainable,
        total_parameters=total,
        truncated_examples=truncated,
    )
