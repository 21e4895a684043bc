"""RAG training and the four-way evaluation on the packaged SmolLM2 for a few steps: the real tokenizer, chat
template and weights, where retrieved passages must actually help the model (unlike a random tiny model)."""

from __future__ import annotations

import math

import pytest

from tests.conftest import CHAT_TASK
from tests.knowledge.rag_helpers import SIDES, rag_project
from tuneloom.artifacts import read_summary
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.train import train_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_smollm2_trains_with_passages_and_they_lower_its_loss_on_the_answers(tmp_path, smollm2_dir, tiny_bert_dir, monkeypatch):
    config, overrides, _ = rag_project(tmp_path, smollm2_dir, tiny_bert_dir, monkeypatch)
    overrides += [f"{CHAT_TASK}:eval.max_new_tokens=4", f"{CHAT_TASK}:eval.max_examples=2", f"{CHAT_TASK}:train.batch_size=2"]
    run = train_task(load_project(config, overrides), CHAT_TASK).run_dir
    summary = read_summary(run).train
    assert summary.steps == 2 and math.isfinite(summary.train_loss) and summary.truncated_examples == 0
    rag = evaluate_run(run).retrieval
    assert rag is not None and set(rag.sides) == SIDES and rag.n_examples == 2 and rag.hit_rate == 1.0
    # the passages hold the reference answers' facts in the same words: a real model's loss on them must drop
    for side in ("base", "tuned"):
        assert rag.sides[f"{side}+retrieval"]["loss"] < rag.sides[side]["loss"] - 0.3, side
    assert rag.deltas["base+retrieval vs base"]["loss"].high < 0
    assert all(len(e.sources) == 2 and e.answers["tuned+retrieval"] for e in rag.examples)
