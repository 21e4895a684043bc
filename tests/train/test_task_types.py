"""NER, preference, pretrain and multi-label tasks; DoRA, rsLoRA, merge; early stopping, packing (tiny models)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tests.task_projects import ner_rows, write_prepared, write_task_project
from tuneloom.artifacts import read_eval
from tuneloom.atomic import read_jsonl
from tuneloom.cli import app
from tuneloom.config import load_project, parse_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.errors import ProjectFileError
from tuneloom.evaluate import evaluate_run
from tuneloom.train import ner, sft, train_task

pytestmark = pytest.mark.timeout(600)
runner = CliRunner()


def _entities_from_tags(tokenizer, text: str, tags: list[str], labels: list[int]) -> list[tuple[str, str]]:
    """(entity text, type) read back from the token tags through the offsets."""
    enc = tokenizer(text, return_offsets_mapping=True)
    spans: list[list] = []
    for (start, end), label in zip(enc["offset_mapping"], labels):
        if label == ner.IGNORE or tags[label] == "O":
            continue
        kind, _, name = tags[label].partition("-")
        if kind == "B":
            spans.append([start, end, name])
        else:
            spans[-1][1] = end
    return [(text[s:e].strip(), name) for s, e, name in spans]


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_bio_tags_follow_character_spans_with_either_tokenizer(model_fixture, request):
    tokenizer = ner.load_tokenizer(request.getfixturevalue(model_fixture))
    tags = ner.tag_names(["CITY", "COURIER", "ORDER"])
    for raw in ner_rows(6):
        row = {"text": raw["sentence"], "entities": json.loads(raw["spans"])}
        enc = ner.encode_row(tokenizer, row, tags, max_length=128)
        expected = [(row["text"][e["start"] : e["end"]], e["label"]) for e in row["entities"]]
        assert _entities_from_tags(tokenizer, row["text"], tags, enc["labels"]) == expected
        first = [tags[label] for label in enc["labels"] if label != ner.IGNORE and tags[label] != "O"][0]
        assert first.startswith("B-")


def test_prepare_writes_the_shared_row_shapes(tmp_path):
    ner_project = load_project(write_task_project(tmp_path / "n", "ner", "all-minilm-l6-v2"))
    rows = load_split(prepare_dataset(ner_project).path, "train")
    assert set(rows[0]) >= {"id", "source", "text", "entities"} and rows[0]["entities"][0].keys() == {"start", "end", "label"}
    manifest = json.loads((Path(prepare_dataset(ner_project).path) / "manifest.json").read_text())
    assert manifest["result"]["labels"] == ["CITY", "COURIER", "ORDER"] and manifest["task_type"] == "ner"

    pref = load_project(write_task_project(tmp_path / "p", "preference", "smollm2-135m-instruct"))
    row = load_split(prepare_dataset(pref).path, "train")[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"

    multi = load_project(write_task_project(tmp_path / "m", "classification", "all-minilm-l6-v2"))
    prepared = prepare_dataset(multi)
    assert prepared.labels == ["billing", "shipping", "tech_support"]
    assert any(r["labels"] == ["billing", "shipping"] for r in load_split(prepared.path, "train"))


def test_prepare_rejects_bad_entity_spans(tmp_path):
    config = write_task_project(tmp_path, "ner", "all-minilm-l6-v2")
    bad = [
        {"sentence": "Order ACM-1 left Paris", "spans": [{"start": 17, "end": 99, "label": "CITY"}]},
        {
            "sentence": "Order ACM-2 left Oslo",
            "spans": [{"start": 0, "end": 11, "label": "ORDER"}, {"start": 5, "end": 9, "label": "X"}],
        },
        {"sentence": "Order ACM-3 left Leeds", "spans": "not a list"},
    ]
    with open(tmp_path / "data" / "entities.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in bad)
    prepared = prepare_dataset(load_project(config))
    rejects = [json.loads(x) for x in (Path(prepared.path) / "rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["entity_out_of_range", "overlapping_entities", "invalid_entities"]


def test_ner_trains_evaluates_and_reports_from_the_cli(tmp_path, tiny_bert_dir):
    config = write_task_project(tmp_path, "ner", tiny_bert_dir, max_steps=4, gate={"min": {"entity_f1": 0.0}})
    result = runner.invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "entity_f1" in result.output and "gate ner: passed" in result.output
    run = next((tmp_path / "workspace" / "runs").iterdir())
    ev = read_eval(run)
    assert set(ev.comparison) == {"entity_f1", "entity_precision", "entity_recall"}
    assert set(ev.tuned["per_type"]) <= {"CITY", "COURIER", "ORDER"}


def test_multilabel_classification_trains_on_multi_hot_targets_and_merges(tmp_path, tiny_bert_dir):
    from tuneloom.inference import load_trained

    config = write_task_project(tmp_path, "classification", tiny_bert_dir, method={"merge": True})
    result = train_task(load_project(config))
    ev = evaluate_run(result.run_dir)
    assert ev.multi_label and sorted(ev.tuned["per_class"]) == ["billing", "shipping", "tech_support"]
    assert all(isinstance(e["labels"], list) for e in ev.examples)
    assert 0.0 <= ev.tuned["macro_f1"] <= 1.0
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    merged = AutoModelForSequenceClassification.from_pretrained(Path(result.run_dir) / "model-merged").eval()
    assert merged.config.problem_type == "multi_label_classification" and merged.config.num_labels == 3
    tuned = load_trained(
        "sequence_classification",
        Path(result.model_dir),
        tiny_bert_dir,
        "lora",
        "fp32",
        ev.labels,
        False,
        multi_label=True,
        pad_token_id=0,
    )
    batch = AutoTokenizer.from_pretrained(tiny_bert_dir)(["Charged twice for order 12"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, tuned(**batch).logits, atol=1e-5)


def test_qlora_pretrain_merges_into_the_unquantized_base(tmp_path, tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    config = write_task_project(
        tmp_path, "pretrain", tiny_llama_dir, method={"kind": "qlora", "merge": True}, train={"precision": "fp32"}
    )
    result = train_task(load_project(config))
    merged = Path(result.run_dir) / "model-merged"
    config_json = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config_json and (merged / "model.safetensors").is_file()


def test_dpo_trains_an_adapter_and_rewards_chosen_answers(tmp_path, tiny_llama_dir):
    config = write_task_project(
        tmp_path,
        "preference",
        tiny_llama_dir,
        max_steps=4,
        train={"lr": 5e-3, "precision": "fp32"},
        gate={"min": {"reward_accuracy": 0.5}},
    )
    result = train_task(load_project(config))
    assert result.attention == "eager"  # train.attention applies to preference tuning too
    model = Path(result.model_dir)
    assert (model / "adapter_model.safetensors").is_file() and not (model / "ref").exists()
    ev = evaluate_run(result.run_dir)
    assert ev.base["reward_accuracy"] == 0.0 and ev.base["reward_margin"] == 0.0
    assert ev.tuned["reward_margin"] > 0 and ev.tuned["reward_accuracy"] > 0.5


def test_kto_trains_on_the_pairs_unpaired(tmp_path, tiny_llama_dir):
    config = write_task_project(tmp_path, "preference", tiny_llama_dir, train={"preference_loss": "kto"})
    result = train_task(load_project(config))
    assert result.steps == 2 and math.isfinite(result.train_loss)
    assert (Path(result.model_dir) / "adapter_model.safetensors").is_file()


def test_pretrain_packs_and_lowers_held_out_loss(tmp_path, tiny_llama_dir):
    config = write_task_project(
        tmp_path,
        "pretrain",
        tiny_llama_dir,
        max_steps=6,
        method={"kind": "full"},
        train={"lr": 3e-3, "precision": "fp32", "max_length": 24},
    )
    project = load_project(config)
    assert project.config.tasks[0].packs
    result = train_task(project)
    assert result.attention == "sdpa"  # packed rows keep examples apart without a square score matrix
    ev = evaluate_run(result.run_dir)
    assert ev.tuned["loss"] < ev.base["loss"] and ev.tuned["tokens"] == ev.base["tokens"] > 0


def test_packed_batch_gives_the_same_per_token_loss_as_padded(tiny_llama_dir):
    """Position ids restarting per example must keep packed examples from attending to each other."""
    from transformers import AutoModelForCausalLM

    tokenizer = sft.load_tokenizer(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    texts = ["The Doorbell Pro ships to France.", "Hold the button for ten seconds until it blinks."]
    rows = [{"input_ids": ids, "labels": ids} for ids in (tokenizer(t)["input_ids"] for t in texts)]
    with torch.no_grad():
        packed = sft.collator(tokenizer, packing=True)([dict(r) for r in rows])
        assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
        logits = model(**packed).logits[0]
        alone = torch.cat([model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows])
    assert torch.allclose(logits, alone, atol=1e-4)


def test_dora_rslora_with_gradient_checkpointing_and_a_merged_copy(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """The merged model's logits equal base + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=2)
    project = load_project(
        config,
        [
            f"{CHAT_TASK}:method.kind=dora",
            f"{CHAT_TASK}:method.rslora=true",
            f"{CHAT_TASK}:method.merge=true",
            f"{CHAT_TASK}:train.gradient_checkpointing=true",
            f"{CHAT_TASK}:train.packing=true",
            f"{CHAT_TASK}:train.precision=fp32",
            f"{CHAT_TASK}:train.lr=0.05",
        ],
    )
    result = train_task(project, CHAT_TASK)
    adapter = json.loads((Path(result.model_dir) / "adapter_config.json").read_text())
    assert adapter["use_dora"] and adapter["use_rslora"]
    merged_dir = Path(result.run_dir) / "model-merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    ids = torch.tensor([sft.load_tokenizer(tiny_llama_dir)("How do I reset the Smart Plug?")["input_ids"]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
        plain = base(ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, result.model_dir)(ids).logits
    assert not torch.allclose(tuned, plain, atol=1e-3), "the adapter did not change the model"
    assert torch.allclose(merged, tuned, atol=1e-4)


def test_early_stopping_keeps_the_best_checkpoint(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """A threshold no change can beat: training stops after `patience` validations without improvement."""
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=10)
    project = load_project(
        config,
        [
            f"{CHAT_TASK}:train.eval_every=1",
            f"{CHAT_TASK}:train.save_every=1",
            f"{CHAT_TASK}:train.early_stopping_patience=2",
            f"{CHAT_TASK}:train.early_stopping_threshold=100",
            f"{CHAT_TASK}:train.keep_best=true",
        ],
    )
    result = train_task(project, CHAT_TASK)
    assert result.steps == 3  # the first validation sets the bar, the next two do not beat it by 100
    evals = [r for r in read_jsonl(Path(result.run_dir) / "metrics.jsonl") if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])
    assert Path(result.best_checkpoint).name == f"checkpoint-{best['step']}"
    assert result.eval_loss == pytest.approx(best["eval_loss"], rel=1e-5)  # the best weights were kept


def test_hand_written_dataset_folder_trains_through_the_api(tmp_path, tiny_bert_dir):
    rows = [{"text": r["sentence"], "entities": json.loads(r["spans"])} for r in ner_rows(12)]
    folder = write_prepared(
        tmp_path / "ds", "ner", {"train": rows[:8], "validation": rows[8:10], "test": rows[10:]}, ["CITY", "COURIER", "ORDER"]
    )
    project = load_project(write_task_project(tmp_path / "p", "ner", tiny_bert_dir))
    result = train_task(project, dataset_dir=folder)
    assert result.dataset == str(folder) and result.steps == 2


BASE = """\
project: p
tasks:
  - name: t
    type: {type}
    model: ./local-model
    data:
      sources: [{{path: d.jsonl}}]
      columns: {columns}
"""


@pytest.mark.parametrize(
    ("task_type", "columns", "extra", "message"),
    [
        ("ner", "{text: t}", "", "ner needs data.columns.entities"),
        ("preference", "{prompt: p, chosen: c}", "", "preference needs data.columns.rejected"),
        ("pretrain", "{prompt: p}", "", "pretrain needs data.columns.text"),
        (
            "preference",
            "{prompt: p, chosen: c, rejected: r}",
            "    train: {preference_loss: kto, batch_size: 1}\n",
            "train.batch_size must be at least 2",
        ),
        ("pretrain", "{text: t}", "    method: {kind: full, merge: true}\n", "method.merge applies to adapters"),
        ("ner", "{text: t, entities: e}", "    train: {packing: true}\n", "train.packing applies to chat_sft and pretrain"),
        (
            "ner",
            "{text: t, entities: e}",
            "    train: {keep_best: true, eval_every: 4, save_every: 6}\n",
            "save_every (6) must be a multiple of eval_every (4)",
        ),
        (
            "pretrain",
            "{text: t}",
            "      split: {validation: 0.0}\n    train: {early_stopping_patience: 2}\n",
            "need a validation split",
        ),
        ("ner", "{text: t, entities: e}", "    gate: {min: {accuracy: 0.5}}\n", "allowed: ['entity_f1'"),
        ("ner", "{text: t, entities: e}", "      multi_label: true\n", "data.multi_label applies to classification"),
    ],
)
def test_invalid_task_settings_are_refused(task_type, columns, extra, message):
    text = BASE.format(type=task_type, columns=columns) + extra
    with pytest.raises(ProjectFileError) as err:
        parse_project(text, "p.yaml")
    assert message in str(err.value)


def test_new_settings_accept_overrides():
    text = BASE.format(type="pretrain", columns="{text: t}")
    project = parse_project(text)
    from tuneloom.config import apply_overrides

    changed = apply_overrides(project, ["train.packing=false", "train.gradient_checkpointing=true", "method.kind=dora"])
    task = changed.tasks[0]
    assert not task.packs and task.train.gradient_checkpointing and task.method.kind == "dora"
    assert yaml.safe_load(yaml.safe_dump(task.model_dump(mode="json")))["train"]["keep_checkpoints"] == 2
