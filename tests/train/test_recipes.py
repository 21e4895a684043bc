"""Classification recipes: the pooling choice, the SetFit-style recipe, and recipe auto-selection (tiny encoders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import CLS_TASK, ticket_rows, write_project
from tuneloom.artifacts import read_summary
from tuneloom.catalog import resolve_model
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.inference import load_classifier, load_trained
from tuneloom.pooled_head import PooledClassifier, encoder_pooling, pool
from tuneloom.train import train_task
from tuneloom.train.recipes import recipe_defaults
from tuneloom.train.setfit import make_pairs, pairs_per_example

pytestmark = pytest.mark.timeout(600)


def _sentence_transformers_folder(src: Path, dst: Path, mode: str = "mean", normalize: bool = True) -> Path:
    """`src` with the sentence-transformers module files (Transformer, Pooling[, Normalize])."""
    shutil.copytree(src, dst)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "1_Pooling").mkdir()
    flags = {f"pooling_mode_{k}": mode == v for k, v in (("mean_tokens", "mean"), ("cls_token", "cls"), ("max_tokens", "max"))}
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **flags}))
    return dst


@pytest.fixture(scope="module")
def tiny_st_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    return _sentence_transformers_folder(tiny_bert_dir, tmp_path_factory.mktemp("st") / "tiny-st")


def _project(root: Path, model: Path, method: str = "lora", **train: object) -> Path:
    path = write_project(root, model, model, max_steps=4)
    doc = yaml.safe_load(path.read_text())
    task = doc["tasks"][1]
    task["method"]["kind"] = method
    task["train"].update(train)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_pooling_mean_for_a_sentence_transformers_folder_cls_otherwise(tmp_path, tiny_bert_dir, tiny_st_dir):
    assert encoder_pooling(tiny_bert_dir) is None  # plain BERT: its own CLS pooler
    assert encoder_pooling(tiny_st_dir) == ("mean", True)
    assert encoder_pooling(resolve_model("all-minilm-l6-v2")) == ("mean", True)
    cls_dir = _sentence_transformers_folder(tiny_bert_dir, tmp_path / "cls", "cls", normalize=False)
    assert encoder_pooling(cls_dir) == ("cls", False)


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]


def test_pairs_alternate_same_and_other_label():
    rows = [{"text": f"text {i}", "label": f"class {i % 3}"} for i in range(12)]
    pairs = make_pairs(rows, 4, seed=0)
    assert len(pairs) == 48 and sum(p["label"] for p in pairs) == 24
    label_of = {r["text"]: r["label"] for r in rows}
    for p in pairs:
        same = label_of[p["sentence1"]] == label_of[p["sentence2"]]
        assert same == bool(p["label"])
    assert pairs_per_example(100, 5, None) == 20 and pairs_per_example(4000, 1000, None) == 2
    assert pairs_per_example(100_000, 5, None) == 1  # at most 10,000 pairs


def test_recipe_defaults_fill_only_what_the_project_file_leaves_out(tmp_path, tiny_st_dir):
    task = load_project(_project(tmp_path, tiny_st_dir, lr=1e-3)).config.task(CLS_TASK)
    setfit = recipe_defaults(task.train, "setfit", 8, full=False)
    assert setfit.epochs == 1 and setfit.lr == 1e-3  # lr was set in the project file
    assert recipe_defaults(task.train, "head", 8, full=False).epochs == 10


def test_head_on_a_sentence_transformers_encoder_is_mean_pooled_and_loads_for_eval_and_serving(tmp_path, tiny_st_dir):
    project = load_project(_project(tmp_path, tiny_st_dir))
    result = train_task(project, CLS_TASK)
    model_dir = Path(result.model_dir)
    info = json.loads((model_dir / "pooled_head.json").read_text())
    assert info["pooling"] == "mean" and info["recipe"] == "head" and (model_dir / "adapter_config.json").is_file()
    labels = info["labels"]
    model = load_trained("sequence_classification", model_dir, tiny_st_dir, "lora", "fp32", labels, False)
    assert isinstance(model, PooledClassifier)
    served = load_classifier(tiny_st_dir, model_dir, labels, False)
    batch = {"input_ids": torch.tensor([[101, 2000, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    assert torch.allclose(model(**batch).logits, served(**batch).logits)
    assert evaluate_run(result.run_dir).tuned["accuracy"] >= 0


@pytest.mark.parametrize("method", ["lora", "full"])
def test_setfit_recipe_trains_pairs_then_a_logistic_head(tmp_path, tiny_st_dir, method):
    project = load_project(_project(tmp_path, tiny_st_dir, method, recipe="setfit"))
    result = train_task(project, CLS_TASK)
    model_dir = Path(result.model_dir)
    assert (model_dir / "head.safetensors").is_file() and not list(model_dir.glob("*.pkl"))
    assert json.loads((model_dir / "pooled_head.json").read_text())["recipe"] == "setfit"
    assert (model_dir / ("adapter_config.json" if method == "lora" else "config.json")).is_file()
    # the logistic regression separates the (very regular) tickets even on a random tiny encoder
    ev = evaluate_run(result.run_dir)
    assert ev.tuned["accuracy"] > 0.5


def test_auto_records_every_candidate_and_trains_the_best(tmp_path, tiny_st_dir):
    project = load_project(_project(tmp_path, tiny_st_dir, recipe="auto"))
    result = train_task(project, CLS_TASK)
    choice = read_summary(result.run_dir).train.recipes
    assert choice is not None and set(choice.scores) == {"head", "setfit"}
    assert all(score is not None for score in choice.scores.values())
    assert choice.scores[choice.chosen] == max(s for s in choice.scores.values() if s is not None)
    recipe = json.loads((Path(result.model_dir) / "pooled_head.json").read_text())["recipe"]
    assert recipe == choice.chosen
    report = (Path(result.run_dir) / "report.html").read_text()
    assert "Recipes (train.recipe: auto)" in report and all(name in report for name in choice.scores)


def test_auto_skips_candidates_over_the_time_budget(tmp_path, tiny_st_dir, monkeypatch):
    from tuneloom.train import recipes

    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(recipes.time, "time", lambda: float(next(clock)))
    project = load_project(_project(tmp_path, tiny_st_dir, recipe="auto", recipe_budget=50))
    task = project.config.task(CLS_TASK)
    rows = [{"text": f"{r['subject']} {r['body']}", "label": r["queue"]} for r in ticket_rows()[::2] if r["queue"]]
    labels = sorted({r["label"] for r in rows})
    choice = recipes.select_recipe(task, tiny_st_dir, "fp32", labels, rows[:30], rows[30:])
    assert choice.chosen == "head" and choice.scores["setfit"] is None and "budget" in choice.reason


@pytest.mark.slow
def test_setfit_on_the_packaged_minilm_beats_chance_by_far(tmp_path):
    project = load_project(_project(tmp_path, resolve_model("all-minilm-l6-v2"), recipe="setfit", max_steps=None, setfit_pairs=8))
    result = train_task(project, CLS_TASK)
    assert evaluate_run(result.run_dir).tuned["accuracy"] >= 0.8
