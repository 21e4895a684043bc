"""CPU speed changes (train/speed.py): same mask law, same outputs, the right attention kernel."""

from __future__ import annotations

import pytest
import torch

from tuneloom.config import TaskConfig
from tuneloom.train import sft
from tuneloom.train.speed import EAGER_MAX_TOKENS, FastDropout, attention_for, speed_up_lora


def test_fast_dropout_drops_p_of_the_elements_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, dtype=torch.bfloat16)
    y = FastDropout(0.1).train()(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(0.1, abs=0.002)
    assert float(y.float().mean()) == pytest.approx(1.0, abs=0.01)
    assert y.dtype == x.dtype and y.shape == x.shape
    values = torch.unique(y.float()).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9, rel=1e-2)


def test_fast_dropout_lanes_are_independent_of_position():
    """Each int64 gives four lanes; the top lane's sign bit is always 0, which the 15-bit mask removes."""
    torch.manual_seed(1)
    y = FastDropout(0.5).train()(torch.ones(400_000, 4))
    per_lane = (y == 0).float().mean(0)
    assert torch.allclose(per_lane, torch.full((4,), 0.5), atol=0.005), per_lane


def test_fast_dropout_is_identity_in_eval_and_at_zero_and_follows_the_seed():
    x = torch.randn(3, 7, 5)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x
    d = FastDropout(0.3).train()
    torch.manual_seed(5)
    a = d(x)
    torch.manual_seed(5)
    assert torch.equal(a, d(x))
    assert not torch.equal(a, d(x))


def test_fast_dropout_gradient_is_the_scaled_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = FastDropout(0.25).train()(x)
    y.sum().backward()
    expected = (y != 0).float() / (1 - 0.25)
    assert torch.allclose(x.grad, expected, rtol=1e-3)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_fast_dropout_rejects_probabilities_outside_0_1(p):
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(p)


def _task(**train) -> TaskConfig:
    return TaskConfig.model_validate(
        {
            "name": "qa",
            "type": "chat_sft",
            "model": "m",
            "data": {"sources": [{"path": "x.jsonl"}], "columns": {"prompt": "q", "response": "a"}},
            "train": train,
        }
    )


def test_attention_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert attention_for(_task(), EAGER_MAX_TOKENS) == "eager"
    assert attention_for(_task(), EAGER_MAX_TOKENS + 1) == "sdpa"
    assert attention_for(_task(packing=True), 64) == "sdpa"  # a packed row is long, and its examples must stay apart
    assert attention_for(_task(attention="sdpa"), 64) == "sdpa"
    assert attention_for(_task(attention="eager"), 4096) == "eager"
    preference = _task().model_copy(update={"type": "preference"})
    assert attention_for(preference, 64) == "eager"
    encoder = _task(attention="eager").model_copy(update={"type": "classification"})
    assert attention_for(encoder, 64) == "sdpa"  # encoder heads keep transformers' default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert attention_for(_task(), 64) == "sdpa"


def test_attention_setting_is_validated():
    with pytest.raises(ValueError, match="attention"):
        _task(attention="flash")


@pytest.fixture(scope="module")
def chat_batch(tiny_llama_dir):
    tokenizer = sft.load_tokenizer(tiny_llama_dir)
    chats = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        for q, a in [("Is the hub waterproof?", "No, keep it indoors."), ("Hi", "Hello! How can I help today?")]
    ]
    features = []
    for chat in chats:
        enc = sft.encode_chat(tokenizer, chat, 128)
        enc.pop("truncated")
        features.append(enc)
    return sft.collator(tokenizer, answer_logits_only=True)(features)


def test_eager_and_sdpa_attention_give_the_same_loss_on_padded_batches(tiny_llama_dir, chat_batch):
    from transformers import AutoModelForCausalLM

    assert chat_batch["attention_mask"].min() == 0  # the batch has padding
    losses = []
    for attention in ("eager", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation=attention)
        assert model.config._attn_implementation == attention
        losses.append(float(model(**chat_batch).loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_speed_up_lora_keeps_outputs_and_gradients_under_bf16_autocast(tiny_llama_dir, chat_batch):
    """Without dropout the changed model computes exactly what peft's does; with it, masks differ only."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    results = []
    for fast in (False, True):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16)
        model = get_peft_model(
            base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear", init_lora_weights=False)
        )
        if fast:
            assert speed_up_lora(model, "bf16") == 14  # 7 linears x 2 layers
            assert all(isinstance(m, FastDropout) for n, m in model.named_modules() if n.endswith("lora_dropout.default"))
        model.eval()  # dropout off: the outputs must match exactly
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**chat_batch).loss
        loss.backward()
        grad = next(p.grad for n, p in model.named_parameters() if n.endswith("q_proj.lora_A.default.weight"))
        assert grad.dtype == torch.float32  # adapters stay fp32 master weights
        results.append((float(loss), grad.clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])
