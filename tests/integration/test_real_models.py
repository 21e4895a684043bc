"""A few LoRA steps and an evaluation on the real packaged models (slow: well under a minute on 2 idle cores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import EXAMPLE, write_csv
from tuneloom.config import load_project
from tuneloom.tasks import kind_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

QA_TASK, ROUTER_TASK = "support-qa", "ticket-router"


@pytest.fixture(scope="module")
def real_project(tmp_path_factory) -> Path:
    import pandas as pd
    import yaml

    root = tmp_path_factory.mktemp("real-project")
    lines = (EXAMPLE / "qa.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "qa.jsonl").write_text("".join(lines[:24]), encoding="utf-8")
    tickets = pd.read_csv(EXAMPLE / "tickets.csv", dtype=str, keep_default_na=False).head(80)
    write_csv(root / "tickets.csv", tickets.to_dict("records"), list(tickets.columns))
    example = yaml.safe_load((EXAMPLE / "tuneloom.yaml").read_text())
    by_name = {t["name"]: t for t in example["tasks"]}
    descriptions = by_name[ROUTER_TASK]["label_descriptions"]
    config = {
        "project": "real-models",
        "tasks": [
            {
                "name": QA_TASK,
                "type": "chat_sft",
                "model": "smollm2-135m-instruct",
                "data": {
                    "sources": [{"path": "qa.jsonl"}],
                    "columns": {"prompt": "question", "response": "answer"},
                    "system_prompt": by_name[QA_TASK]["data"]["system_prompt"],
                },
                "method": {"kind": "lora", "r": 8, "alpha": 16},
                "train": {"max_steps": 2, "max_length": 128, "batch_size": 4, "lr": 1e-3},
                "eval": {"max_new_tokens": 16, "batch_size": 4, "max_examples": 4},
            },
            {
                "name": ROUTER_TASK,
                "type": "classification",
                "model": "all-minilm-l6-v2",
                "data": {"sources": [{"path": "tickets.csv"}], "columns": {"text": ["subject", "body"], "label": "queue"}},
                "label_descriptions": descriptions,
                "method": {"kind": "lora", "r": 8, "alpha": 16},
                "train": {"max_steps": 3, "max_length": 128, "batch_size": 16, "lr": 2e-3},
                "eval": {"batch_size": 16},
            },
        ],
    }
    (root / "tuneloom.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def _train_and_eval(root: Path, task: str):
    from tuneloom.data import prepare_dataset
    from tuneloom.evaluate import evaluate_run
    from tuneloom.train import train_task

    project = load_project(root)
    dataset = prepare_dataset(project, task)
    result = train_task(project, task, dataset.path)
    return dataset, result, evaluate_run(result.run_dir)


def _check_training(result, steps: int) -> Path:
    run = Path(result.run_dir)
    assert result.steps == steps
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    assert math.isfinite(result.eval_loss) and result.eval_loss > 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m] + [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert losses and all(math.isfinite(x) for x in losses)
    model = run / "model"
    assert (model / "adapter_config.json").is_file()
    weights = load_file(str(model / "adapter_model.safetensors"))
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b
    assert any(v.float().abs().sum() > 0 for v in lora_b)  # B starts at zero: the steps changed it
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert 0 < result.trainable_parameters < result.total_parameters / 10
    return run


def test_smollm2_lora_steps_and_eval(real_project):
    dataset, result, ev = _train_and_eval(real_project, QA_TASK)
    assert dataset.counts == {"train": 18, "validation": 2, "test": 4}
    _check_training(result, steps=2)
    assert result.total_parameters > 134_000_000
    assert ev.n_examples == 4
    for side in ("base", "tuned"):
        for metric in kind_of("chat_sft").metrics:
            assert math.isfinite(ev.side(side)[metric]), (side, metric)
        assert 0 <= ev.side(side)["rouge_l"] <= 1 and 0 <= ev.side(side)["token_f1"] <= 1
        assert ev.side(side)["gen_tokens_per_s"] > 0
    # the real instruct model already predicts the answers far better than chance (log 49152 = 10.8)
    assert ev.base["loss"] < 5
    assert all(e["base"].strip() and e["tuned"].strip() for e in ev.examples)
    assert set(ev.comparison) == set(kind_of("chat_sft").metrics)


def test_minilm_classifier_lora_steps_and_eval(real_project):
    dataset, result, ev = _train_and_eval(real_project, ROUTER_TASK)
    assert sum(dataset.counts.values()) == dataset.sources[0].kept
    assert dataset.sources[0].read == 80
    _check_training(result, steps=3)
    labels = dataset.labels
    assert ev.labels == labels and len(labels) >= 5
    assert ev.n_examples == dataset.counts["test"]
    for side in ("base", "tuned"):
        for metric in kind_of("classification").metrics:
            assert 0 <= ev.side(side)[metric] <= 1, (side, metric)
        assert set(ev.side(side)["per_class"]) == set(labels)
        assert sum(map(sum, ev.side(side)["confusion"])) == ev.n_examples
    assert set(ev.comparison) == set(kind_of("classification").metrics)
    # the zero-shot baseline uses the real sentence encoder: far better than picking at random
    assert ev.base["accuracy"] > 1.5 / len(labels)
