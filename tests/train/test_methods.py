"""Full fine-tuning and QLoRA on tiny models, trained and evaluated through the Python API."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHAT_TASK, CLS_TASK, write_project
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.train import train_task

pytestmark = pytest.mark.timeout(600)


def _project(root: Path, llama: Path, bert: Path, method: dict, task: str):
    config = write_project(root, llama, bert, max_steps=2)
    data = yaml.safe_load(config.read_text())
    for t in data["tasks"]:
        if t["name"] == task:
            t["method"] = method
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(config)


def test_full_fine_tuning_saves_whole_model_and_evaluates(tmp_path, tiny_llama_dir, tiny_bert_dir):
    project = _project(tmp_path, tiny_llama_dir, tiny_bert_dir, {"kind": "full"}, CHAT_TASK)
    result = train_task(project, CHAT_TASK)
    model = Path(result.model_dir)
    assert (model / "model.safetensors").is_file() and not (model / "adapter_config.json").exists()
    assert result.trainable_parameters == result.total_parameters
    ev = evaluate_run(result.run_dir)
    assert math.isfinite(ev.tuned["loss"]) and ev.base["loss"] != ev.tuned["loss"]


def test_full_fine_tuning_of_a_classifier(tmp_path, tiny_llama_dir, tiny_bert_dir):
    project = _project(tmp_path, tiny_llama_dir, tiny_bert_dir, {"kind": "full"}, CLS_TASK)
    result = train_task(project, CLS_TASK)
    assert (Path(result.model_dir) / "model.safetensors").is_file()
    ev = evaluate_run(result.run_dir)
    assert 0.0 <= ev.tuned["accuracy"] <= 1.0 and ev.labels == sorted(ev.tuned["per_class"])


def test_qlora_quantizes_the_base_to_nf4_and_trains_an_adapter(tmp_path, tiny_llama_dir, tiny_bert_dir):
    pytest.importorskip("bitsandbytes")
    project = _project(tmp_path, tiny_llama_dir, tiny_bert_dir, {"kind": "qlora", "r": 4, "alpha": 8}, CHAT_TASK)
    result = train_task(project, CHAT_TASK)
    model = Path(result.model_dir)
    assert (model / "adapter_model.safetensors").is_file()
    assert result.trainable_parameters < result.total_parameters / 2
    assert result.train_loss is not None and math.isfinite(result.train_loss)
    assert result.attention == "eager"  # short unpacked chats on a CPU (train.attention: auto)


def test_qlora_validation_during_training_keeps_gradients_flowing(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """bitsandbytes' CPU inference repacking must not leak into training steps after a validation pass."""
    import warnings

    pytest.importorskip("bitsandbytes")
    project = _project(tmp_path, tiny_llama_dir, tiny_bert_dir, {"kind": "qlora", "r": 4, "alpha": 8}, CHAT_TASK)
    project.config.tasks[0].train.max_steps = 3
    project.config.tasks[0].train.eval_every = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_task(project, CHAT_TASK)
    assert not [w for w in caught if "gemv_4bit" in str(w.message)]
