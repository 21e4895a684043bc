"""`tuneloom.inference`: full weights vs adapter, head label maps, dtype; and evaluation leaving global state alone."""

from __future__ import annotations

import pytest
import torch

from tuneloom.inference import base_tagger, load_base, load_tokenizer, load_trained, model_dtype

LABELS = ["billing", "shipping", "tech_support"]
TAGS = ["O", "B-CITY", "I-CITY"]


def _save_adapter(base: torch.nn.Module, out, task_type: str, targets: str | list[str] = "all-linear") -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(task_type=task_type, r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out)


def test_model_dtype():
    assert model_dtype("bf16") is torch.bfloat16
    assert model_dtype("fp32") is torch.float32 and model_dtype("fp16") is torch.float32


def test_causal_lm_full_and_adapter(tmp_path, tiny_llama_dir):
    full = load_trained("causal_lm", tiny_llama_dir, tmp_path / "unused", "full", "bf16", [], False)
    assert full.dtype == torch.bfloat16 and not full.training
    base = load_base("causal_lm", tiny_llama_dir, "fp32", [], False)
    _save_adapter(base, tmp_path / "adapter", "CAUSAL_LM")
    tuned = load_trained("causal_lm", tmp_path / "adapter", tiny_llama_dir, "lora", "fp32", [], False)
    assert type(tuned).__name__.startswith("Peft") and tuned.dtype == torch.float32 and not tuned.training
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, load_base("causal_lm", tiny_llama_dir, "fp32", [], False)(ids).logits)


def test_classifier_adapter_gets_label_maps_pad_and_fp32(tmp_path, tiny_bert_dir):
    base = load_base("sequence_classification", tiny_bert_dir, "bf16", LABELS, False, multi_label=True, pad_token_id=0)
    _save_adapter(base, tmp_path / "adapter", "SEQ_CLS", ["query", "value"])
    model = load_trained(
        "sequence_classification",
        tmp_path / "adapter",
        tiny_bert_dir,
        "qlora",
        "bf16",
        LABELS,
        False,
        multi_label=True,
        pad_token_id=0,
    )
    config = model.config
    assert config.id2label == dict(enumerate(LABELS)) and config.label2id == {label: i for i, label in enumerate(LABELS)}
    assert config.problem_type == "multi_label_classification" and config.pad_token_id is not None
    assert model.dtype == torch.float32 and not model.training


def test_classifier_full_weights_load_in_fp32(tmp_path, tiny_bert_dir):
    saved = load_base("sequence_classification", tiny_bert_dir, "fp32", LABELS, False).to(torch.bfloat16)
    saved.save_pretrained(tmp_path / "full")
    model = load_trained("sequence_classification", tmp_path / "full", tiny_bert_dir, "full", "bf16", [], False)
    assert model.dtype == torch.float32 and model.config.id2label == dict(enumerate(LABELS))


def test_tagger_head_is_seeded_and_leaves_the_global_rng_alone(tiny_bert_dir):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = base_tagger(tiny_bert_dir, TAGS, False)
    after = torch.rand(3)
    assert torch.equal(after, expected)  # the global generator did not move
    second = load_base("token_classification", tiny_bert_dir, "fp32", TAGS, False)
    assert torch.equal(first.classifier.weight, second.classifier.weight)
    assert first.config.id2label == dict(enumerate(TAGS))
    torch.manual_seed(0)  # the head is what `torch.manual_seed(0)` on the global generator drew before
    from transformers import AutoModelForTokenClassification

    old = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3, dtype=torch.float32)
    assert torch.equal(old.classifier.weight, first.classifier.weight)


def test_tagger_adapter_round_trip(tmp_path, tiny_bert_dir):
    base = base_tagger(tiny_bert_dir, TAGS, False)
    _save_adapter(base, tmp_path / "adapter", "TOKEN_CLS", ["query", "value"])
    model = load_trained("token_classification", tmp_path / "adapter", tiny_bert_dir, "lora", "bf16", TAGS, False)
    assert model.config.label2id == {t: i for i, t in enumerate(TAGS)} and model.dtype == torch.float32


@pytest.mark.parametrize("fail", [False, True])
def test_generate_answers_restores_padding_side(tiny_llama_dir, chat_rows_small, fail):
    from tuneloom.evaluate.chat import generate_answers

    tokenizer = load_tokenizer(tiny_llama_dir)
    tokenizer.padding_side = "right"
    model = load_base("causal_lm", tiny_llama_dir, "fp32", [], False)

    def tick(n: int) -> None:
        assert tokenizer.padding_side == "left"
        if fail:
            raise RuntimeError("stop")

    if fail:
        with pytest.raises(RuntimeError):
            generate_answers(model, tokenizer, chat_rows_small, 2, 2, tick)
    else:
        answers, _, _ = generate_answers(model, tokenizer, chat_rows_small, 2, 2, tick)
        assert len(answers) == len(chat_rows_small)
    assert tokenizer.padding_side == "right"


@pytest.fixture
def chat_rows_small() -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": "Answer."}]}
        for i in range(3)
    ]
