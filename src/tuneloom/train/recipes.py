"""Classification recipes (`train.recipe`): head, setfit, and auto (the best of them on the validation split).

- head: cross-entropy on a head over the encoder's pooling (mean pooling for a sentence-transformers model).
- setfit: contrastive pairs tune the encoder, then logistic regression on its embeddings (`train.setfit`).
- auto: with fewer than `AUTO_MAX_PER_CLASS` examples per class, each recipe is trained on the train split
  and scored on the validation split within `train.recipe_budget` seconds; the best is trained for the run
  (same seed, so it is the model that was scored) and every candidate's score goes into summary.json.

Defaults that depend on the number of examples per class apply to the settings the project file leaves out.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, set_seed

from tuneloom.artifacts import RecipeChoice
from tuneloom.config import TaskConfig, TrainConfig
from tuneloom.inference import load_tokenizer
from tuneloom.pooled_head import PooledClassifier, model_pooling, save_pooled
from tuneloom.train.classify import encode_split, head_parts
from tuneloom.train.common import TaskParts, lora_config, training_kwargs
from tuneloom.train.distributed import world_size
from tuneloom.train.setfit import VALIDATION_PAIRS, fit_head, make_pairs, pairs_per_example, sentence_model, trainer_class

RECIPES = ("head", "setfit")
AUTO_MAX_PER_CLASS = 50  # auto tries every recipe below this many training examples per class
SCHEDULE_KEYS = ("num_train_epochs", "learning_rate", "warmup_steps", "eval_steps", "save_steps", "logging_steps")


def examples_per_class(rows: list[dict[str, Any]], labels: list[str]) -> float:
    return len(rows) / max(len(labels), 1)


def recipe_defaults(train: TrainConfig, recipe: str, per_class: float, full: bool) -> TrainConfig:
    """`train` with the recipe's defaults for the settings left at TrainConfig's defaults (a resumed run,
    whose snapshot holds every setting, gets the same schedule).

    setfit: one pass over the pairs at SetFit's body learning rate (2e-5 full, 1e-4 for an adapter).
    head: more passes over few examples (10 below 16 per class, 5 below 50), and 5e-5 for full fine-tuning.
    """
    if recipe == "setfit":
        wanted: dict[str, Any] = {"epochs": 1, "lr": 2e-5 if full else 1e-4, "warmup_ratio": 0.1}
    else:
        wanted = {"epochs": 10 if per_class < 16 else 5 if per_class < AUTO_MAX_PER_CLASS else train.epochs}
        if full:
            wanted["lr"] = 5e-5
    fields = TrainConfig.model_fields
    return train.model_copy(update={k: v for k, v in wanted.items() if getattr(train, k) == fields[k].default})


def _with_schedule(parts: TaskParts, task: TaskConfig, train: TrainConfig, precision: str) -> TaskParts:
    """Trainer arguments of the recipe's settings (epochs, learning rate, and the steps that follow from them)."""
    adjusted = task.model_copy(update={"train": train})
    kwargs = training_kwargs(adjusted, Path("."), len(parts.train), precision, bool(parts.validation))
    parts.extra_args.update({k: kwargs[k] for k in SCHEDULE_KEYS})
    return parts


def recipe_parts(
    recipe: str,
    task: TaskConfig,
    model_path: Path,
    precision: str,
    labels: list[str],
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    """The training parts of one recipe, its defaults applied."""
    per_class = examples_per_class(train_rows, labels)
    full = task.method.kind == "full"
    build = setfit_parts if recipe == "setfit" else head_parts
    parts = build(task, model_path, precision, labels, train_rows, val_rows)
    return _with_schedule(parts, task, recipe_defaults(task.train, recipe, per_class, full), precision)


def setfit_parts(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    labels: list[str],
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> TaskParts:
    """The setfit recipe: text pairs for sentence-transformers' trainer; `before_save` fits the head on the tuned
    encoder and returns the classifier that `save` writes."""
    if task.data.multi_label:
        raise ValueError("train.recipe setfit needs one label per example; multi-label tasks use recipe head")
    if task.method.merge:
        raise ValueError("train.recipe setfit saves the encoder and a separate head: method.merge does not apply")
    if world_size() > 1:  # the pair loss calls the encoder outside DistributedDataParallel's forward
        raise ValueError("train.recipe setfit trains in one process; run it without accelerate launch")
    from sentence_transformers import SentenceTransformerTrainingArguments

    tokenizer = load_tokenizer(model_path, task.trust_remote_code)
    train, truncated = encode_split(tokenizer, train_rows, labels, task.train.max_length)
    val, _ = encode_split(tokenizer, val_rows, labels, task.train.max_length)
    pooling = model_pooling(model_path)
    model = sentence_model(model_path, pooling, task.train.max_length, task.trust_remote_code)
    if task.method.kind != "full":
        from peft import get_peft_model

        model[0].model = get_peft_model(model[0].model, lora_config(task.method, "FEATURE_EXTRACTION"))
    per_example = pairs_per_example(len(train), examples_per_class(train_rows, labels), task.train.setfit_pairs)
    pairs = make_pairs(train_rows, per_example, task.train.seed)
    val_pairs = make_pairs(val_rows, VALIDATION_PAIRS, task.train.seed) if len(val_rows) > 1 else []
    fitted: list[PooledClassifier] = []

    def finish(trained: Any) -> PooledClassifier:
        encoder = getattr(trained, "module", trained)[0].model
        classifier = PooledClassifier(encoder, labels, pooling[0], pooling[1]).to(encoder.device)
        classifier.recipe = "setfit"
        fit_head(classifier, tokenizer, train, val, task.train.seed)
        fitted[:] = [classifier]
        return classifier

    return TaskParts(
        tokenizer,
        model,
        pairs,
        val_pairs,
        truncated=truncated,
        notes=[f"setfit: {len(pairs)} sentence pairs ({per_example} per example), then logistic regression"],
        trainer_class=trainer_class(),
        args_class=SentenceTransformerTrainingArguments,
        # the Trainer's token count reads `input_ids`, which sentence-transformers' batches name per column
        extra_args={"include_num_input_tokens_seen": "no"},
        before_save=finish,
        save=lambda trained, out_dir: save_pooled(fitted[0] if fitted else finish(trained), out_dir),
    )


def fit_quietly(task: TaskConfig, parts: TaskParts, precision: str, out_dir: Path) -> Any:
    """Train `parts` without checkpoints, validation or logging; the trained classifier (what `before_save`
    returns, else the trained model) in eval mode."""
    from datasets import Dataset

    kwargs = {**training_kwargs(task, out_dir, len(parts.train), precision, False), **parts.extra_args}
    kwargs.update(save_strategy="no", eval_strategy="no", load_best_model_at_end=False, metric_for_best_model=None)
    trainer = parts.trainer_class(
        model=parts.model,
        args=parts.args_class(**kwargs),
        train_dataset=Dataset.from_list(parts.train),
        processing_class=parts.tokenizer,
        **({"data_collator": parts.collator} if parts.collator is not None else {}),
        **({"compute_loss_func": parts.loss_func} if parts.loss_func is not None else {}),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    classifier: Any = parts.before_save(model) if parts.before_save is not None else None
    return (classifier or model).eval()


@torch.inference_mode()
def predict_labels(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> list[int]:
    """The argmax class of each text (any classifier returning `.logits`)."""
    device = next(model.parameters()).device
    out: list[int] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        out += model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).tolist()
    return out


def validation_accuracy(model: Any, tokenizer: Any, rows: list[dict[str, Any]], labels: list[str], max_length: int) -> float:
    predicted = predict_labels(model.eval(), tokenizer, [r["text"] for r in rows], max_length)
    return sum(labels[p] == r["label"] for p, r in zip(predicted, rows)) / max(len(rows), 1)


def auto_candidates(
    task: TaskConfig, train_rows: list[dict[str, Any]], val_rows: list[dict[str, Any]], labels: list[str]
) -> tuple[list[str], str]:
    """The recipes auto tries, and why only one when so."""
    if not val_rows:
        return ["head"], "no validation split: recipe head"
    if task.data.multi_label or task.method.merge:
        return ["head"], "multi-label or method.merge: recipe head (setfit needs one label per example and no merge)"
    per_class = examples_per_class(train_rows, labels)
    if per_class >= AUTO_MAX_PER_CLASS:
        return ["head"], f"{per_class:.0f} examples per class (>= {AUTO_MAX_PER_CLASS}): recipe head"
    return list(RECIPES), ""


def select_recipe(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    labels: list[str],
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
) -> RecipeChoice:
    """Each candidate recipe trained on train and scored on validation (accuracy) within `train.recipe_budget`."""
    candidates, reason = auto_candidates(task, train_rows, val_rows, labels)
    if len(candidates) == 1:
        return RecipeChoice(chosen=candidates[0], reason=reason)
    started = time.time()
    scores: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    for recipe in candidates:
        if scores and time.time() - started > task.train.recipe_budget:
            scores[recipe] = None  # not started: over the time budget
            continue
        begun = time.time()
        set_seed(task.train.seed)
        parts = recipe_parts(recipe, task, model_path, precision, labels, train_rows, val_rows)
        with tempfile.TemporaryDirectory(prefix="tuneloom-recipe-") as tmp:
            model = fit_quietly(task, parts, precision, Path(tmp))
        scores[recipe] = round(validation_accuracy(model, parts.tokenizer, val_rows, labels, task.train.max_length), 4)
        seconds[recipe] = round(time.time() - begun, 1)
    chosen = max((r for r in candidates if scores[r] is not None), key=lambda r: scores[r] or 0.0)
    skipped = [r for r in candidates if scores[r] is None]
    note = f"over the {task.train.recipe_budget}s budget, not tried: {', '.join(skipped)}" if skipped else ""
    set_seed(task.train.seed)  # the run trains the chosen recipe from the same start
    return RecipeChoice(chosen=chosen, scores=scores, seconds=seconds, reason=note)
