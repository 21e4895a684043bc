"""The new task types on the real packaged models: a few steps each, then evaluation (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from task_projects import write_task_project
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.train import train_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_ner_on_minilm(tmp_path):
    config = write_task_project(tmp_path, "ner", "all-minilm-l6-v2", max_steps=3, train={"lr": 5e-3, "batch_size": 8})
    result = train_task(load_project(config))
    ev = evaluate_run(result.run_dir)
    assert set(ev["comparison"]) == {"entity_f1", "entity_precision", "entity_recall"}
    assert all(0.0 <= ev["tuned"][m] <= 1.0 for m in ev["comparison"])


def test_multilabel_on_minilm(tmp_path):
    config = write_task_project(tmp_path, "classification", "all-minilm-l6-v2", max_steps=2, train={"batch_size": 8})
    ev = evaluate_run(train_task(load_project(config)).run_dir)
    assert ev["multi_label"] and 0.0 <= ev["tuned"]["macro_f1"] <= 1.0


def test_dpo_on_smollm2(tmp_path):
    config = write_task_project(tmp_path, "preference", "smollm2-135m-instruct", max_steps=2,
                                train={"batch_size": 2, "max_length": 96, "lr": 5e-4}, eval={"max_examples": 4})
    result = train_task(load_project(config))
    assert math.isfinite(result.train_loss)
    ev = evaluate_run(result.run_dir)
    assert ev["tuned"]["reward_margin"] > 0  # a few DPO steps already prefer the chosen answers


def test_pretrain_with_dora_and_merge_on_smollm2(tmp_path):
    """DoRA on SmolLM2, merged into the base: the merged copy gives the same logits as base + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = write_task_project(tmp_path, "pretrain", "smollm2-135m-instruct", max_steps=2,
                                method={"kind": "dora", "merge": True}, train={"batch_size": 2, "max_length": 64})
    result = train_task(load_project(config))
    ev = evaluate_run(result.run_dir)
    assert ev["tuned"]["loss"] < ev["base"]["loss"]
    snapshot_base = Path(json.loads((Path(result.run_dir) / "model" / "adapter_config.json").read_text())["base_model_name_or_path"])
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    ids = tokenizer("The Smart Plug needs a 2.4 GHz Wi-Fi network.", return_tensors="pt")["input_ids"]
    dtype = torch.bfloat16 if result.precision == "bf16" else torch.float32
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(Path(result.run_dir) / "model-merged", dtype=dtype)(ids).logits.float()
        base = AutoModelForCausalLM.from_pretrained(snapshot_base, dtype=dtype)
        tuned = PeftModel.from_pretrained(base, result.model_dir)(ids).logits.float()
    tolerance = 0.15 if dtype == torch.bfloat16 else 1e-3  # bf16 rounds the merged weights once more
    assert (merged - tuned).abs().max() < tolerance
    assert (merged.argmax(-1) == tuned.argmax(-1)).float().mean() > 0.9
