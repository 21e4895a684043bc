"""The new task types on the real packaged models: two or three steps each, then evaluation (slow).

DoRA, rsLoRA, merging and packing are covered on the tiny models in test_tasks.py.
"""

from __future__ import annotations

import math

import pytest

from tests.task_projects import write_task_project
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.train import train_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
NO_VALIDATION = {"split": {"validation": 0.0, "test": 0.15, "seed": 3}}  # SmolLM2 steps are slow on CPU: no mid-run validation


def test_ner_on_minilm(tmp_path):
    config = write_task_project(tmp_path, "ner", "all-minilm-l6-v2", max_steps=3, train={"lr": 5e-3, "batch_size": 8})
    result = train_task(load_project(config))
    ev = evaluate_run(result.run_dir)
    assert set(ev.comparison) == {"entity_f1", "entity_precision", "entity_recall"}
    assert all(0.0 <= ev.tuned[m] <= 1.0 for m in ev.comparison)


def test_multilabel_on_minilm(tmp_path):
    config = write_task_project(tmp_path, "classification", "all-minilm-l6-v2", max_steps=2, train={"batch_size": 8})
    ev = evaluate_run(train_task(load_project(config)).run_dir)
    assert ev.multi_label and 0.0 <= ev.tuned["macro_f1"] <= 1.0


def test_dpo_on_smollm2(tmp_path):
    config = write_task_project(
        tmp_path,
        "preference",
        "smollm2-135m-instruct",
        max_steps=2,
        train={"batch_size": 2, "max_length": 64, "lr": 1e-3, "precision": "fp32"},
        eval={"max_examples": 3, "batch_size": 3},
        data=NO_VALIDATION,
    )
    result = train_task(load_project(config))
    assert math.isfinite(result.train_loss)
    ev = evaluate_run(result.run_dir)
    assert ev.tuned["reward_margin"] > 0  # two DPO steps already prefer the chosen answers


def test_pretrain_on_smollm2(tmp_path):
    config = write_task_project(
        tmp_path,
        "pretrain",
        "smollm2-135m-instruct",
        max_steps=2,
        train={"batch_size": 4, "max_length": 48, "lr": 1e-3},
        eval={"max_examples": 3},
        data=NO_VALIDATION,
    )
    result = train_task(load_project(config))
    ev = evaluate_run(result.run_dir)
    assert ev.tuned["loss"] < ev.base["loss"] and ev.tuned["tokens"] > 0
