"""A new task type is one module and one registration: a toy kind proves it end to end (config, data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_jsonl
from tuneloom.config import ProjectFileError, load_project, parse_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.tasks import EvalContext, kind_names, kind_of, register, unregister
from tuneloom.tasks.base import Built, KindDefaults


class Echo(KindDefaults):
    """Toy task: copy the input text (upper-cased) to the output; exact match is the metric."""

    name = "echo"
    summary = "Toy: upper-case the text."
    required_columns = ("text",)
    allowed_columns = frozenset({"text"})
    metrics = ("exact_match",)
    head = "causal_lm"

    def check_config(self, task: Any) -> None:
        if task.method.kind == "full":
            raise ValueError("echo trains adapters only")

    def build_example(self, data: Any, record: dict[str, Any], clean: Any) -> Built:
        text = clean.text(record[data.columns.text])
        return ({"text": text, "target": text.upper()}, None) if text else (None, "empty_text")

    def measure_tokens(self, examples: list[dict[str, Any]], tokenizer: Any) -> None:
        for e in examples:
            e["_tokens"] = len(e["text"].split())

    def training_parts(self, *args: Any) -> Any:
        raise NotImplementedError("the toy kind is not trained in this test")

    def eval_passes(self, with_production: bool) -> int:
        return 1

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        hits = [float(r["text"].upper() == r["target"]) for r in ctx.rows]
        ctx.tick(len(ctx.rows))
        return {"base": {"exact_match": 0.0}, "tuned": {"exact_match": sum(hits) / len(hits)}, "examples": []}


PROJECT = """\
project: toy
tasks:
  - name: shout
    type: echo
    model: ./no-model
    method: {{kind: {method}}}
    data:
      sources: [{{path: rows.jsonl}}]
      columns: {{text: body}}
      token_stats: false
"""


@pytest.fixture
def echo_kind():
    register(Echo())
    yield kind_of("echo")
    unregister("echo")


def test_unregistered_type_is_refused_with_the_known_kinds():
    with pytest.raises(ProjectFileError, match="'chat_sft', 'classification', 'embedding', 'ner', 'preference' or 'pretrain'"):
        parse_project(PROJECT.format(method="lora"))


def test_a_registered_kind_validates_and_prepares_data(tmp_path: Path, echo_kind):
    assert "echo" in kind_names()
    with pytest.raises(ProjectFileError, match="echo trains adapters only"):
        parse_project(PROJECT.format(method="full"))
    (tmp_path / "tuneloom.yaml").write_text(PROJECT.format(method="lora"))
    write_jsonl(tmp_path / "rows.jsonl", [{"body": f"ticket number {i}"} for i in range(20)] + [{"body": ""}])
    project = load_project(tmp_path)
    dataset = prepare_dataset(project)
    assert sum(dataset.counts.values()) == 20 and dataset.sources[0].rejected == {"empty_text": 1}
    row = load_split(dataset.path, "train")[0]
    assert row["target"] == row["text"].upper()
    ctx = EvalContext(
        task=project.config.tasks[0],
        model_dir=tmp_path,
        base_path=tmp_path,
        precision="fp32",
        labels=[],
        rows=load_split(dataset.path, "test"),
        tick=lambda n: None,
    )
    assert echo_kind.evaluate(ctx)["tuned"]["exact_match"] == 1.0


def test_gate_and_metric_rules_follow_the_kind(echo_kind):
    text = PROJECT.format(method="lora").replace("    data:", "    gate: {min: {accuracy: 0.5}}\n    data:")
    with pytest.raises(ProjectFileError, match=r"gate.min: unknown metric\(s\) \['accuracy'\] for echo"):
        parse_project(text)
