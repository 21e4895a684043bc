"""Int8 weight-only decoding: the layer, the model conversion, LoRA on top, and the server's setting."""

from __future__ import annotations

import pytest
import torch

from tuneloom.serve.int8 import DECODE_ROWS, Int8Linear, quantize_decoder


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, DECODE_ROWS, DECODE_ROWS + 1, 70])
def test_int8_linear_matches_linear_on_decode_and_prefill_rows(dtype, rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 160, bias=True).to(dtype)
    x = torch.randn(2, rows, 96, dtype=dtype)
    quantized = Int8Linear(linear)
    assert quantized.weight.dtype == torch.int8 and quantized.scale.dtype == dtype
    got, want = quantized(x), linear(x)
    assert got.shape == want.shape and got.dtype == dtype
    error = (got.float() - want.float()).norm() / want.float().norm()
    assert error < 0.02, error  # int8 per-row rounding: ~0.5% here; bf16 adds its own rounding


def test_quantize_decoder_keeps_embeddings_and_unties_head(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied in the checkpoint
    layers = model.config.num_hidden_layers
    assert quantize_decoder(model) == layers * 7 + 1  # q k v o gate up down per layer, and the head
    assert isinstance(model.get_output_embeddings(), Int8Linear)
    assert model.get_input_embeddings().weight.dtype == torch.float32  # the lookup table is not quantized
    assert model.config.tie_word_embeddings is False
    ids = torch.tensor([[1, 5, 9, 200, 3000, 17]])
    with torch.inference_mode():
        got, want = model(ids).logits, reference(ids).logits
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.999
    assert quantize_decoder(model) == 0  # already converted: nothing left to do


def test_decode_weights_setting():
    from tuneloom.errors import TuneloomError
    from tuneloom.serve.backends import decode_in_int8

    assert decode_in_int8("auto", gpu=False) and decode_in_int8("int8", gpu=False)
    assert not decode_in_int8("model", gpu=False) and not decode_in_int8("auto", gpu=True)
    with pytest.raises(TuneloomError, match="decode_weights: int8 is the CPU decoding path"):
        decode_in_int8("int8", gpu=True)


@pytest.mark.slow
def test_int8_smollm2_agrees_with_bf16(smollm2_dir):
    """The packaged SmolLM2: per-token log-probabilities of a support answer stay close, greedy text starts alike."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    reference = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16).eval()
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16).eval()
    quantize_decoder(model)
    chat = [
        {"role": "user", "content": "How do I reset my Doorbell Pro?"},
        {"role": "assistant", "content": "Hold the reset button for ten seconds until the light flashes blue."},
    ]
    ids = tokenizer.apply_chat_template(chat, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        got = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])
        want = torch.log_softmax(reference(ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])
        prompt = tokenizer.apply_chat_template(chat[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        a = model.generate(**prompt, max_new_tokens=12, do_sample=False)
        b = reference.generate(**prompt, max_new_tokens=12, do_sample=False)
    # measured 0.12 (bf16 itself is 0.06 from fp32); the answer-level agreement is in bench/export_agreement.py
    assert (got - want).abs().mean() < 0.2, (got - want).abs().mean()
    assert a[0, -12:-6].tolist() == b[0, -12:-6].tolist()


def test_serve_command_makes_idle_openmp_threads_sleep(monkeypatch, tmp_path):
    import os

    from typer.testing import CliRunner

    from tuneloom.cli import app

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    result = CliRunner().invoke(app, ["serve", "-c", str(tmp_path / "missing.yaml")])
    assert result.exit_code != 0  # no project there; the policy is set before anything loads
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_adapter_over_int8_base_matches_full_precision(tiny_llama_dir, tmp_path, dora):
    """An adapter loaded by the server's cache over the int8 base answers as over the checkpoint's weights;
    its weights are cast to the activations' dtype; DoRA reads the dequantized base weight, not the int8 values."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneloom.serve.adapters import AdapterCache

    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=dora, init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), config).save_pretrained(tmp_path / "ad")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tmp_path / "ad").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).eval()
    quantize_decoder(base)
    cache = AdapterCache(base, 2**30)
    cache.acquire("ad", tmp_path / "ad")
    model = cache.prepare("ad")
    lora_dtypes = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    assert lora_dtypes == {torch.bfloat16}
    ids = torch.tensor([[1, 5, 9, 200, 3000, 17, 40, 41]])
    with torch.inference_mode():
        got, want = model(ids).logits.float(), reference(ids).logits
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.99
