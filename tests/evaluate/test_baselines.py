"""Cheap baselines: each one on tiny data, the encoder's pooling, the cache, the off switch and the gate rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CLS_TASK, write_jsonl, write_project
from tuneloom.artifacts import read_snapshot, write_snapshot
from tuneloom.config import GateConfig, TaskConfig, load_project, parse_project
from tuneloom.errors import ProjectFileError
from tuneloom.evaluate import baselines, evaluate_run
from tuneloom.evaluate.gate import check_gate
from tuneloom.pooled_head import model_pooling
from tuneloom.tasks import EvalContext

pytestmark = pytest.mark.timeout(300)

TOPICS = {
    "billing": ["refund my invoice payment", "charged twice on my card", "invoice amount is wrong"],
    "shipping": ["parcel tracking has not moved", "courier lost my package", "delivery address change"],
}


def _cls_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"r{start + i}", "text": f"{TOPICS[label][i % 3]} order {start + i}", "label": label}
        for i in range(n)
        for label in TOPICS
    ]


def _task(kind: str, model: Path, **extra) -> TaskConfig:
    columns = {"chat_sft": {"prompt": "q", "response": "a"}, "classification": {"text": "t", "label": "l"}}
    columns["ner"] = {"text": "t", "entities": "e"}
    data = {"sources": [{"path": "x.jsonl"}], "columns": columns[kind], **extra}
    return TaskConfig.model_validate({"name": "t", "type": kind, "model": str(model), "data": data})


def _ctx(task: TaskConfig, model: Path, train_dir: Path, rows: list[dict], labels: list[str]) -> EvalContext:
    return EvalContext(task, model, model, "fp32", labels, rows, lambda n: None, train_dir=train_dir)


def test_tfidf_logreg_gets_separable_data_right():
    train, test = _cls_rows(6), _cls_rows(3, start=100)
    preds = baselines.tfidf_predictions(train, [r["text"] for r in test], ["billing", "shipping"], multi_label=False)
    assert preds == [r["label"] for r in test]
    multi = [{**r, "labels": [r["label"], "urgent"] if i % 2 else [r["label"]]} for i, r in enumerate(train)]
    sets = baselines.tfidf_predictions(multi, [test[0]["text"]], ["billing", "shipping", "urgent"], multi_label=True)
    assert test[0]["label"] in sets[0]


def test_pooling_follows_the_sentence_transformers_config(minilm_dir, tiny_bert_dir, tmp_path):
    assert model_pooling(minilm_dir) == ("mean", True)  # all-MiniLM-L6-v2 ships modules.json + 1_Pooling
    assert model_pooling(tiny_bert_dir) == ("cls", True)  # a plain encoder folder
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert model_pooling(tmp_path) == ("mean", True)  # a decoder's first token sees nothing of the text
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert model_pooling(tmp_path) == ("cls", False)  # no Normalize module


def test_classification_baselines_are_scored_cached_and_compared(tiny_bert_dir, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "train.jsonl", _cls_rows(6))
    rows = _cls_rows(3, start=100)
    ctx = _ctx(_task("classification", tiny_bert_dir), tiny_bert_dir, tmp_path, rows, ["billing", "shipping"])
    scored = {"examples": [{"tuned": "billing"} for _ in rows]}
    found = baselines.classification_baselines(ctx, scored)
    tfidf, probe = found["tfidf_logreg"], found["embedding_logreg"]
    assert tfidf["metrics"]["accuracy"] == 1.0 and "cls pooling" in probe["method"]
    low, high = tfidf["intervals"]["accuracy"]  # tuned (always billing: 0.5) minus TF-IDF (1.0)
    assert low <= -0.5 + 1e-9 and high < 0 and 0.0 <= probe["metrics"]["accuracy"] <= 1.0
    (cache,) = tmp_path.glob("baselines-*.json")
    monkeypatch.setattr(baselines, "tfidf_predictions", lambda *a: pytest.fail("the cache was not used"))
    assert baselines.classification_baselines(ctx, scored)["tfidf_logreg"]["metrics"] == tfidf["metrics"]
    assert list(tmp_path.glob("baselines-*.json")) == [cache]


def test_chat_nearest_neighbour_answers(minilm_dir, tmp_path):
    qa = [("How do I reset the camera?", "Hold the button ten seconds."), ("What is the warranty?", "Two years.")]
    train = [
        {"id": f"t{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for i, (q, a) in enumerate(qa)
    ]
    write_jsonl(tmp_path / "train.jsonl", train)
    rows = [
        {
            "id": "x",
            "messages": [
                {"role": "user", "content": "how to reset my camera"},
                {"role": "assistant", "content": "Hold the button ten seconds."},
            ],
        }
    ]
    ctx = _ctx(_task("chat_sft", minilm_dir), minilm_dir, tmp_path, rows, [])
    found = baselines.chat_baselines(ctx, {"examples": [{"tuned": "no idea"}]})
    for name in ("nearest_bm25", "nearest_embedding"):
        assert found[name]["metrics"]["exact_match"] == 1.0 and found[name]["metrics"]["token_f1"] == 1.0
        assert found[name]["intervals"]["token_f1"] == [-1.0, -1.0]  # tuned scores 0 on the one example


def test_ner_gazetteer_finds_training_entities(minilm_dir, tmp_path):
    train = [
        {
            "id": "a",
            "text": "Alice flew to Paris.",
            "entities": [{"start": 0, "end": 5, "label": "PER"}, {"start": 14, "end": 19, "label": "LOC"}],
        }
    ]
    write_jsonl(tmp_path / "train.jsonl", train)
    rows = [
        {
            "id": "b",
            "text": "Paris welcomed Alice and Bob.",
            "entities": [
                {"start": 0, "end": 5, "label": "LOC"},
                {"start": 15, "end": 20, "label": "PER"},
                {"start": 25, "end": 28, "label": "PER"},
            ],
        }
    ]
    assert baselines.gazetteer_spans(baselines.gazetteer(train), "Parisian Alice") == [{"start": 9, "end": 14, "label": "PER"}]
    ctx = _ctx(_task("ner", minilm_dir), minilm_dir, tmp_path, rows, ["LOC", "PER"])
    found = baselines.ner_baselines(ctx, {"examples": [{"score_tuned": 1.0}]})["gazetteer"]
    assert found["metrics"]["entity_precision"] == 1.0 and found["metrics"]["entity_recall"] == pytest.approx(2 / 3)


def test_eval_run_has_baselines_reuses_the_cache_and_can_turn_them_off(tmp_path, tiny_llama_dir, tiny_bert_dir, monkeypatch):
    from tuneloom.train import train_task

    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    run = train_task(load_project(config), CLS_TASK).run_dir
    ev = evaluate_run(run)
    assert set(ev.baselines or {}) == {"tfidf_logreg", "embedding_logreg"}
    assert ev.baselines["tfidf_logreg"]["metrics"]["accuracy"] >= 0.8  # the toy tickets are easy for TF-IDF
    dataset = Path(read_snapshot(run).dataset.path)
    assert len(list(dataset.glob("baselines-*.json"))) == 1
    snapshot = read_snapshot(run)
    snapshot.task["gate"]["beat_baselines"] = {"metric": "accuracy", "margin": 0.05}
    write_snapshot(run, snapshot)
    from tuneloom.reports.html import write_report

    html = write_report([Path(run)], Path(run), "t", tmp_path).read_text()
    verdict = check_gate(GateConfig.model_validate({"beat_baselines": {"metric": "accuracy", "margin": 0.05}}), ev.model_dump())
    assert "Gate rule <code>beat_baselines</code> (accuracy, margin 0.05)" in html
    assert verdict.rules[-1].detail.replace("'", "&#39;") in html and "a tie or a lead inside the margin fails" in html
    monkeypatch.setattr(baselines, "tfidf_predictions", lambda *a: pytest.fail("the cache was not used"))
    assert evaluate_run(run).baselines["tfidf_logreg"] == ev.baselines["tfidf_logreg"]
    snapshot = read_snapshot(run)
    snapshot.task["eval"]["baselines"] = False
    snapshot.task["gate"]["beat_baselines"] = None  # the rule needs the baselines
    write_snapshot(run, snapshot)
    assert evaluate_run(run).baselines is None


def _result(tuned: float, tfidf: float, probe: float) -> dict:
    metrics = {"tfidf_logreg": tfidf, "embedding_logreg": probe}
    return {
        "base": {"accuracy": 0.3},
        "tuned": {"accuracy": tuned},
        "baselines": {
            name: {"metrics": {"accuracy": v}, "intervals": {}, "seconds": 0.1, "method": name} for name, v in metrics.items()
        },
    }


def test_gate_beat_baselines_passes_and_fails_naming_the_baseline():
    gate = GateConfig.model_validate({"beat_baselines": {"metric": "accuracy", "margin": 0.02}})
    assert check_gate(gate, _result(0.95, 0.90, 0.92)).passed
    failed = check_gate(gate, _result(0.93, 0.90, 0.92))
    assert not failed.passed and "ship the baseline 'embedding_logreg' instead" in failed.rules[-1].detail
    missing = check_gate(gate, {"base": {"accuracy": 0.3}, "tuned": {"accuracy": 0.9}})
    assert not missing.passed and "eval.baselines: true" in missing.rules[-1].detail


@pytest.mark.parametrize(
    ("margin", "tuned", "passed", "says"),
    [
        (0.02, 0.94, True, ""),  # a lead of exactly the margin passes (0.94 - 0.92 is 0.0199999... in floats)
        (0.02, 0.93, False, "within the margin"),
        (0.0, 0.92, False, "a tie"),  # "beat" is strict: a tie ships the cheaper baseline
        (0.0, 0.921, True, ""),
        (0.0, 0.91, False, "the baseline is better"),
    ],
)
def test_gate_beat_baselines_within_the_margin_or_tied_recommends_the_baseline(margin, tuned, passed, says):
    gate = GateConfig.model_validate({"beat_baselines": {"metric": "accuracy", "margin": margin}})
    rule = check_gate(gate, _result(tuned, 0.90, 0.92)).rules[-1]
    assert rule.passed is passed and says in rule.detail
    assert ("ship the baseline 'embedding_logreg' instead" in rule.detail) is not passed


def test_beat_baselines_needs_the_baselines_and_a_known_metric():
    text = """project: p
tasks:
  - name: t
    type: classification
    model: m
    data: {{sources: [{{path: x.csv}}], columns: {{text: t, label: l}}}}
    eval: {{baselines: {on}}}
    gate: {{beat_baselines: {{metric: {metric}}}}}
"""
    parse_project(text.format(on="true", metric="accuracy"))
    for on, metric in (("false", "accuracy"), ("true", "token_f1")):
        with pytest.raises(ProjectFileError, match="beat_baselines"):
            parse_project(text.format(on=on, metric=metric))
