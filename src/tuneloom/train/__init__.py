"""`train_task`: one task's dataset and base model become a tuned model in a run folder."""

from __future__ import annotations

import json
import os
import platform
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset
from rich.console import Console
from transformers import PrinterCallback, TrainerCallback, set_seed

from tuneloom.artifacts import (
    DatasetManifest,
    DatasetRef,
    RunSnapshot,
    TrainingSummary,
    TrainResult,
    read_manifest,
    read_snapshot,
    write_summary,
)
from tuneloom.atomic import read_jsonl, write_jsonl_atomic
from tuneloom.catalog import resolve_model
from tuneloom.config import Project, TaskConfig
from tuneloom.data.prepare import load_split, prepare_dataset
from tuneloom.errors import TuneloomError
from tuneloom.reports.training import write_run_report
from tuneloom.tasks import kind_of
from tuneloom.train.common import (
    RunLogger,
    TaskParts,
    choose_precision,
    count_parameters,
    longest_example,
    stopping_callbacks,
    training_kwargs,
)
from tuneloom.train.distributed import gather, is_main, shared_run_dir, world_size
from tuneloom.train.memory import check_training_memory
from tuneloom.train.speed import speed_up_lora
from tuneloom.train.tracking import start_tracking
from tuneloom.workspace import Workspace, run_state, set_status

__all__ = ["ResumeError", "TrainResult", "resume_run", "train_task"]


class ResumeError(TuneloomError):
    """A run that cannot be resumed (finished, still running, or without a checkpoint)."""


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
    project: Project,
    task_name: str | None = None,
    dataset_dir: str | Path | None = None,
    console: Console | None = None,
    callbacks: list[TrainerCallback] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train one task of the project; prepares its data first when no dataset version exists.

    `init_from`: an earlier version's model/ folder to continue from (its adapter, or its full weights).

    Under `accelerate launch` every process calls this; rank 0 alone writes the run folder.
    """
    main = is_main()
    console = (console or Console(stderr=True)) if main else Console(quiet=True)
    task = project.config.task(task_name)
    ws = Workspace(project.workspace)
    if dataset_dir is None:  # the version matching the current data settings (reused when unchanged)
        dataset_dir = Path(prepare_dataset(project, task.name).path)
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    model_path = resolve_model(task.model, task.trust_remote_code)
    if init_from is not None and task.method.kind == "full":  # full weights: the earlier version is the base
        model_path = Path(init_from)
    precision = choose_precision(task.train.precision)
    snapshot = RunSnapshot(
        project=project.config.project,
        project_file=str(project.path),
        task=task.model_dump(mode="json"),
        dataset=DatasetRef(path=str(dataset_dir), version=manifest.result.version),
        base_model_path=str(model_path),
        precision=precision,
        versions=_versions(),
        init_from=str(init_from) if init_from is not None else None,
    )
    run = shared_run_dir(lambda: ws.new_run(task.name, snapshot))
    console.print(f"[bold]{task.name}[/]: {task.method.kind} on {task.model} ({precision}), run {run.name}")
    return _run_with_status(
        run,
        lambda extra: _fit(task, dataset_dir, manifest, model_path, run, precision, console, extra, init_from=init_from),
        lambda: start_tracking(project, run, snapshot.model_dump(mode="json")),
        callbacks,
        console,
    )


def resume_run(run_dir: str | Path, console: Console | None = None) -> TrainResult:
    """Continue an interrupted or failed run from its last checkpoint, with the settings it started with.

    transformers restores the model, optimizer, scheduler, RNG states and the position in the
    data order from the checkpoint, so the run ends where an uninterrupted one would.
    """
    console = console or Console(stderr=True)
    run = Path(run_dir)
    state = run_state(run)
    if state in ("running", "completed"):
        raise ResumeError(f"run {run.name} is {state}: only interrupted or failed runs can be resumed")
    checkpoint = last_complete_checkpoint(run)
    if checkpoint is None:
        raise ResumeError(
            f"run {run.name} has no checkpoint in {run / 'checkpoints'}; start a new run with `tuneloom train` "
            f"(checkpoints are written every train.save_every steps)"
        )
    snapshot = read_snapshot(run)
    task = snapshot.task_config()
    dataset_dir = Path(snapshot.dataset.path)
    manifest = read_manifest(dataset_dir)
    step = int(checkpoint.name.rpartition("-")[2])
    _forget_metrics_after(run, step)
    set_status(run, "running", resumed_from=checkpoint.name)
    console.print(f"[bold]{task.name}[/]: resuming run {run.name} from step {step}")
    return _run_with_status(
        run,
        lambda extra: _fit(
            task, dataset_dir, manifest, Path(snapshot.base_model_path), run, snapshot.precision, console, extra, str(checkpoint)
        ),
        None,
        None,
        console,
    )


def last_complete_checkpoint(run: Path) -> Path | None:
    """The newest checkpoint whose trainer_state.json exists (the Trainer writes it last, so a kill during
    a save leaves an incomplete folder behind, which is skipped)."""
    found = [p for p in (run / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.rpartition("-")[2]), default=None)


def _forget_metrics_after(run: Path, step: int) -> None:
    """Drop metrics.jsonl lines the killed process wrote after its last checkpoint (they are redone)."""
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        write_jsonl_atomic(metrics, [row for row in read_jsonl(metrics) if row.get("step", 0) <= step])


def _run_with_status(
    run: Path,
    fit: Callable[[list[TrainerCallback]], TrainResult],
    tracking: Callable[[], Any] | None,
    callbacks: list[TrainerCallback] | None,
    console: Console,
) -> TrainResult:
    """Run `fit` with the extra callbacks, recording completed / interrupted (SIGTERM, Ctrl-C) / failed in
    status.json and the MLflow run; under `accelerate launch` only rank 0 writes."""
    main = is_main()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    tracker = None
    try:
        tracker = tracking() if tracking and main else None
        result = fit([*(callbacks or []), *([tracker] if tracker else [])])
    except BaseException as exc:
        if main:
            interrupted = isinstance(exc, KeyboardInterrupt)
            set_status(
                run,
                "interrupted" if interrupted else "failed",
                error="stopped by a signal before the end" if interrupted else f"{type(exc).__name__}: {exc}",
            )
            if tracker:
                tracker.finish("KILLED" if interrupted else "FAILED")
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if main:
        write_summary(run, TrainingSummary(train=result))
        write_run_report(run)
        set_status(run, "completed")
        if tracker:
            tracker.finish("FINISHED")
            console.print(f"tracked in MLflow: {tracker.display_uri} (run {tracker.run_id})")
    return result


def _trainer(
    task: TaskConfig, parts: TaskParts, run: Path, precision: str, console: Console, extra: list[TrainerCallback]
) -> Any:
    """The task's Trainer (transformers', or TRL's for preference tasks) with our arguments and callbacks."""
    has_val = bool(parts.validation)
    if task.train.batch_size > len(parts.train):
        console.print(
            f"note: train.batch_size {task.train.batch_size} is larger than the {len(parts.train)} training examples; "
            f"using batches of {max(1, len(parts.train))}"
        )
    args = parts.args_class(**{**training_kwargs(task, run, len(parts.train), precision, has_val), **parts.extra_args})
    kwargs: dict[str, Any] = {}
    if parts.collator is not None:
        kwargs["data_collator"] = parts.collator
    if parts.loss_func is not None:
        kwargs["compute_loss_func"] = parts.loss_func
    trainer = parts.trainer_class(
        model=parts.model,
        args=args,
        train_dataset=Dataset.from_list(parts.train),
        eval_dataset=Dataset.from_list(parts.validation) if has_val else None,
        processing_class=parts.tokenizer,
        callbacks=[*([RunLogger(run, task.name, console)] if is_main() else []), *stopping_callbacks(task, has_val), *extra],
        **kwargs,
    )
    trainer.remove_callback(PrinterCallback)  # RunLogger prints progress and writes metrics.jsonl instead
    return trainer


def _save(trainer: Any, parts: TaskParts, task: TaskConfig, run: Path, precision: str) -> Path:
    """model/: adapter only for LoRA/DoRA/QLoRA, full weights otherwise (safetensors); model-merged/ on request."""
    if parts.before_save is not None:
        parts.before_save(trainer.model)
    model_dir = run / "model"
    if parts.save is None:
        trainer.save_model(str(model_dir))  # the Trainer saves on the main process only
    elif is_main():
        parts.save(trainer.accelerator.unwrap_model(trainer.model), model_dir)
    if not is_main():
        return model_dir
    parts.tokenizer.save_pretrained(model_dir)
    if task.method.merge:
        merged_dir = merge_adapter(task, model_dir, precision, run / "model-merged", trainer.model.config)
        parts.tokenizer.save_pretrained(merged_dir)
    return model_dir


def merge_adapter(task: TaskConfig, adapter_dir: Path, precision: str, out_dir: Path, trained_config: Any) -> Path:
    """The base (reloaded unquantized, so QLoRA merges into real weights) with the adapter folded in.

    `trained_config`: the trained model's config, whose label names and head size the base must share.
    """
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification, AutoPeftModelForTokenClassification

    from tuneloom.inference import model_dtype
    from tuneloom.train.common import save_merged

    heads = {
        "causal_lm": AutoPeftModelForCausalLM,
        "sequence_classification": AutoPeftModelForSequenceClassification,
        "token_classification": AutoPeftModelForTokenClassification,
    }
    head = kind_of(task.type).head
    kwargs: dict[str, Any] = {
        "trust_remote_code": task.trust_remote_code,  # heads keep fp32 weights, as in training
        "dtype": model_dtype(precision if head == "causal_lm" else "fp32"),
    }
    if head != "causal_lm":
        kwargs.update(
            num_labels=trained_config.num_labels,
            id2label=trained_config.id2label,
            label2id=trained_config.label2id,
            problem_type=trained_config.problem_type,
            pad_token_id=trained_config.pad_token_id,
        )
    model = heads[head].from_pretrained(adapter_dir, **kwargs)
    return save_merged(model, out_dir)


def load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    """Start a new adapter from an earlier version's: same LoRA settings required, every weight must fit."""
    from peft import PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not isinstance(model, PeftModel) or not weights.is_file():
        raise TuneloomError(
            f"cannot continue from {adapter_dir}: it is not a PEFT adapter this task's recipe trains "
            "(set iterate.start_from: base to retrain from the base model)"
        )
    loaded = set_peft_model_state_dict(model, load_file(str(weights)))
    unexpected = list(getattr(loaded, "unexpected_keys", []) or [])
    if unexpected:
        raise TuneloomError(
            f"the adapter in {adapter_dir} does not fit this task's adapter settings (method.r, target modules); "
            f"{len(unexpected)} weight(s) have no place, e.g. {unexpected[0]}. Set iterate.start_from: base"
        )


def _final_eval_loss(trainer: Any) -> float:
    """Validation loss of the final weights; reuses the validation of the last step when it had one."""
    logged = [h for h in trainer.state.log_history if "eval_loss" in h]
    if logged and logged[-1]["step"] == trainer.state.global_step and not trainer.args.load_best_model_at_end:
        return float(logged[-1]["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def _fit(
    task: TaskConfig,
    dataset_dir: Path,
    manifest: DatasetManifest,
    model_path: Path,
    run: Path,
    precision: str,
    console: Console,
    extra: list[TrainerCallback],
    resume_from: str | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    set_seed(task.train.seed)
    train_rows, val_rows = load_split(dataset_dir, "train"), load_split(dataset_dir, "validation")
    check_training_memory(task, model_path, precision, len(manifest.labels), longest_example(manifest, task))
    kind = kind_of(task.type)
    parts = kind.training_parts(task, model_path, precision, manifest, train_rows, val_rows)
    if init_from is not None and task.method.kind != "full":
        load_adapter_weights(parts.model, Path(init_from))
        console.print(f"starting from the adapter in {init_from}")
    if task.method.kind != "full":
        speed_up_lora(parts.model, precision)
    attention = getattr(parts.model.config, "_attn_implementation", None)
    if kind.causal_lm:
        console.print(f"attention: {attention} (train.attention: {task.train.attention})")
    for note in parts.notes:
        console.print(f"[yellow]{note}")
    if parts.truncated:
        console.print(
            f"[yellow]{parts.truncated} training examples were longer than max_length={task.train.max_length} and were truncated"
        )
    trainable, total = count_parameters(parts.model)
    trainer = _trainer(task, parts, run, precision, console, extra)
    # read before training: checkpoint rotation may delete the resumed-from checkpoint
    before = json.loads((Path(resume_from) / "trainer_state.json").read_text()) if resume_from else {}
    tokens_before = int(before.get("num_input_tokens_seen", 0))
    started = time.time()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - started
    eval_loss = _final_eval_loss(trainer) if parts.validation else None
    model_dir = _save(trainer, parts, task, run, precision)
    tokens = int(trainer.state.num_input_tokens_seen)  # summed over processes by the Trainer
    process_ids = gather(os.getpid())
    tokens_now = tokens - tokens_before  # this run's share, for tokens/s
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
        tokens_per_s=round(tokens_now / max(seconds, 1e-9), 1),
        trainable_parameters=trainable,
        total_parameters=total,
        truncated_examples=parts.truncated,
        attention=attention,
        best_checkpoint=trainer.state.best_model_checkpoint,
        resumed_from=resume_from,
        processes=world_size(),
        global_batch_size=task.train.batch_size * task.train.grad_accum * world_size(),
        process_ids=process_ids,
        recipes=parts.recipes,
    )
