"""Training building blocks that need no model: precision, Trainer arguments, class weights, encoding."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from transformers import TrainingArguments

from tuneloom.config import TaskConfig
from tuneloom.errors import ProjectFileError
from tuneloom.train import classify, common


def _task(**train) -> TaskConfig:
    return TaskConfig.model_validate(
        {
            "name": "router",
            "type": "classification",
            "model": "all-minilm-l6-v2",
            "data": {"sources": [{"path": "t.csv"}], "columns": {"text": "body", "label": "queue"}},
            "train": train,
        }
    )


@pytest.mark.parametrize(
    "native, requested, expected",
    [
        (True, "auto", "bf16"),
        (False, "auto", "fp32"),
        (True, "fp32", "fp32"),
        (False, "fp32", "fp32"),
        (True, "bf16", "bf16"),
    ],
)
def test_choose_precision(monkeypatch, native, requested, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "cpu_supports_bf16", lambda: native)
    assert common.choose_precision(requested) == expected


def test_choose_bf16_without_native_support_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ProjectFileError, match="no native bf16"):
        common.choose_precision("bf16")


def test_training_arguments_from_epochs(tmp_path):
    task = _task(epochs=3, batch_size=8, grad_accum=2, lr=1e-3, warmup_ratio=0.1, scheduler="linear")
    args = TrainingArguments(**common.training_kwargs(task, tmp_path, n_train=100, precision="fp32"))
    # 100 rows / (8 * 2) -> 7 steps per epoch, 21 steps in all; eval about 6 times: every 21 // 6 = 3 steps
    assert args.max_steps == -1 and args.num_train_epochs == 3
    assert args.eval_steps == 3 and args.logging_steps == 3
    assert args.eval_strategy == "steps"
    assert args.learning_rate == 1e-3 and args.per_device_train_batch_size == 8
    assert args.gradient_accumulation_steps == 2
    assert args.get_warmup_steps(21) == math.ceil(21 * 0.1)  # the ratio is applied to the step count
    assert args.lr_scheduler_type == "linear"
    assert args.bf16 is False and args.save_strategy == "steps" and args.save_steps == 3 and args.save_total_limit == 2
    assert args.load_best_model_at_end is False and args.gradient_checkpointing is False
    assert args.train_sampling_strategy == "group_by_length"
    assert args.output_dir == str(tmp_path / "checkpoints")


def test_training_arguments_keep_best_checkpointing_and_early_stopping(tmp_path):
    task = _task(
        max_steps=40,
        save_every=10,
        keep_best=True,
        early_stopping_patience=2,
        keep_checkpoints=1,
        gradient_checkpointing=True,
        group_by_length=False,
    )
    args = TrainingArguments(**common.training_kwargs(task, tmp_path, n_train=100, precision="fp32"))
    assert args.eval_steps == 10 and args.save_steps == 10  # validations follow the checkpoints
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and args.greater_is_better is False
    assert args.save_total_limit == 1 and args.gradient_checkpointing and args.train_sampling_strategy == "random"
    [stopper] = common.stopping_callbacks(task, has_validation=True)
    assert stopper.early_stopping_patience == 2
    assert common.stopping_callbacks(task, has_validation=False) == []


def test_training_arguments_max_steps_and_no_validation(tmp_path):
    task = _task(max_steps=40, eval_every=5)
    args = TrainingArguments(**common.training_kwargs(task, tmp_path, n_train=10, precision="bf16", has_validation=False))
    assert args.max_steps == 40
    assert args.eval_strategy == "no"
    assert args.logging_steps == 5
    assert args.bf16 is True


def test_class_weights_setting():
    assert _task().train.class_weights == "balanced"
    assert _task(class_weights="none").train.class_weights == "none"
    with pytest.raises(ValidationError):
        _task(class_weights="inverse")


def test_balanced_loss_weights_by_inverse_frequency():
    rows = [{"label": "a"}] * 3 + [{"label": "b"}]
    loss = classify.balanced_loss(["a", "b", "c"], rows)

    class Out:
        logits = torch.zeros(2, 3)

    # uniform logits: each example's cross-entropy is log 3
    # weights = n / (labels * count) = 4 / (3 * 3) for a, 4 / (3 * 1) for b, 4 / (3 * 1) for c (unseen: count 1)
    # targets a, b: (4/9 + 4/3) * log 3 summed, divided by 2 items
    expected = (4 / 9 + 4 / 3) * math.log(3) / 2
    assert loss(Out(), torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-6)
    # with gradient accumulation the Trainer passes the number of items in the whole batch
    assert loss(Out(), torch.tensor([0, 1]), num_items_in_batch=4).item() == pytest.approx(expected * 2 / 4, rel=1e-6)


def test_balanced_loss_equals_plain_cross_entropy_when_balanced():
    rows = [{"label": "a"}, {"label": "b"}] * 5
    loss = classify.balanced_loss(["a", "b"], rows)

    class Out:
        logits = torch.tensor([[2.0, -1.0], [0.5, 0.25], [-3.0, 1.0]])

    target = torch.tensor([0, 1, 1])
    assert loss(Out(), target).item() == pytest.approx(torch.nn.functional.cross_entropy(Out.logits, target).item())


def test_classification_encoding_truncates_and_keeps_sep(minilm_dir):
    tok = classify.load_tokenizer(minilm_dir)
    rows = [{"text": "short ticket", "label": "b"}, {"text": "word " * 300, "label": "a"}]
    out, truncated = classify.encode_split(tok, rows, ["a", "b"], max_length=32)
    assert truncated == 1
    assert [e["labels"] for e in out] == [1, 0]
    assert len(out[1]["input_ids"]) == 32 == len(out[1]["attention_mask"])
    assert out[1]["input_ids"][0] == tok.cls_token_id and out[1]["input_ids"][-1] == tok.sep_token_id
    assert out[0]["input_ids"] == tok("short ticket")["input_ids"]
    with pytest.raises(KeyError):
        classify.encode_split(tok, [{"text": "x", "label": "zzz"}], ["a", "b"], 32)
