"""The memory planner: its parts, its advice, and its estimates against measured peaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuneloom.errors import TuneloomError
from tuneloom.train.memory import GB, available_memory, cgroup_free, fit_advice, model_shape, plan_memory


@pytest.fixture(scope="module")
def smol_shape(smollm2_dir):
    return model_shape(smollm2_dir)


def test_shape_reads_the_config_without_weights(smol_shape, tiny_bert_dir):
    assert 134_000_000 < smol_shape.parameters < 135_000_000  # SmolLM2-135M
    assert smol_shape.layers == 30 and smol_shape.hidden_size == 576 and smol_shape.kv_size == 192
    assert smol_shape.head_tied and smol_shape.decoder
    bert = model_shape(tiny_bert_dir)
    assert not bert.decoder and bert.head_parameters == 0 and bert.layers == 2


def test_plan_parts_order_as_expected(smol_shape):
    full = plan_memory(smol_shape, "full", "bf16", 128, 1, device="cpu")
    lora = plan_memory(smol_shape, "lora", "bf16", 384, 8, device="cpu")
    qlora = plan_memory(smol_shape, "qlora", "nf4", 384, 8, device="cpu")
    ckpt = plan_memory(smol_shape, "lora", "bf16", 384, 8, gradient_checkpointing=True, device="cpu")
    assert lora.trainable_parameters < full.trainable_parameters == smol_shape.parameters
    assert plan_memory(smol_shape, "lora", "bf16", 128, 1, device="cpu").total < full.total  # optimizer states dominate
    # at batch 8 x 384 activations dominate, and peft's fp32 adapters keep more of them than full bf16 training
    assert lora.activations > plan_memory(smol_shape, "full", "bf16", 384, 8, device="cpu").activations
    assert qlora.weights < lora.weights and ckpt.activations < lora.activations
    assert plan_memory(smol_shape, "lora", "bf16", 384, 4, device="cpu").total < lora.total
    assert plan_memory(smol_shape, "lora", "fp32", 384, 8, device="cpu").total > lora.total
    inference = {p: plan_memory(smol_shape, "inference", p, 512, device="cpu").weights for p in ("fp32", "bf16", "int8", "nf4")}
    # SmolLM2 is stored in bf16: fp32 loading holds both copies for a moment, int8 quantises from fp32
    assert smol_shape.stored_bytes == 2 and inference["fp32"] == 3 * inference["bf16"]
    assert inference["nf4"] < inference["bf16"] < inference["fp32"] < inference["int8"]
    assert full.total == full.weights + full.trainable_state + full.activations + full.overhead


def test_plan_rejects_impossible_combinations(smol_shape):
    with pytest.raises(TuneloomError, match="qlora trains on NF4"):
        plan_memory(smol_shape, "qlora", "bf16", 128)
    with pytest.raises(TuneloomError, match="fp32 or bf16"):
        plan_memory(smol_shape, "full", "int8", 128)


def test_fit_advice_names_settings_that_fit(smol_shape):
    full = plan_memory(smol_shape, "full", "fp32", 128, 2, device="cpu")
    lora = plan_memory(smol_shape, "lora", "fp32", 128, 2, device="cpu")
    assert fit_advice(smol_shape, full, full.total + 1) is None
    message = fit_advice(smol_shape, full, lora.total + GB // 10)
    assert message is not None and "full training in fp32 at batch 2 x 128 tokens needs about" in message
    assert "method.kind lora" in message and "method.kind qlora" in message
    big = plan_memory(smol_shape, "lora", "bf16", 384, 8, device="cpu")
    smaller = plan_memory(smol_shape, "lora", "bf16", 384, 2, device="cpu")
    message = fit_advice(smol_shape, big, smaller.total + 1)
    assert message is not None and "train.batch_size 2" in message and "train.max_length 96" in message
    hopeless = fit_advice(smol_shape, full, GB // 10)
    assert hopeless is not None and "smaller model" in hopeless


def test_eager_attention_adds_its_score_matrices(smol_shape):
    sdpa = plan_memory(smol_shape, "lora", "bf16", 256, 8, device="cpu")
    eager = plan_memory(smol_shape, "lora", "bf16", 256, 8, device="cpu", attention="eager")
    assert eager.activations - sdpa.activations == 8 * 9 * 256**2 * 30 * 8  # batch x heads x L^2 x layers x 8 bytes
    assert smol_shape.attention_heads == 9
    message = fit_advice(smol_shape, eager, sdpa.total + 1)
    assert message is not None and "train.attention sdpa" in message


def test_available_memory_is_positive():
    free, where = available_memory()
    assert free > 0 and where.startswith(("RAM", "GPU"))


def test_cgroup_limits_v2_v1_and_unlimited(tmp_path):
    (tmp_path / "memory.max").write_text("1000000000\n")
    (tmp_path / "memory.current").write_text("400000000\n")
    assert cgroup_free(tmp_path) == 600_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_free(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("2000")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("2500")
    assert cgroup_free(v1) == 0
    assert cgroup_free(tmp_path / "missing") is None


_MEASURE = """
import json, sys, torch
from transformers import AutoModelForCausalLM
from tuneloom.train.memory import peak_rss_bytes, rss_bytes
mode, seq, batch, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
base = rss_bytes()
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16,
                                             attn_implementation="sdpa" if mode == "inference" else "eager")
ids = torch.randint(0, 1000, (batch, seq))
if mode == "inference":
    with torch.inference_mode():
        model(input_ids=ids, logits_to_keep=1)
else:  # as `tuneloom train` runs LoRA on a bf16 CPU: eager attention at this length, speed_up_lora, autocast
    from peft import LoraConfig, get_peft_model
    from tuneloom.train.speed import speed_up_lora
    model = get_peft_model(model, LoraConfig(r=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")).train()
    speed_up_lora(model, "bf16")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
print(json.dumps({"peak": peak_rss_bytes() - base}))
"""

TOLERANCE = 0.30  # the estimate is within 30% of the measured peak (measured here: -14% and 0%)


@pytest.mark.slow
@pytest.mark.parametrize("mode,seq,batch", [("inference", 512, 1), ("lora", 128, 2)])
def test_estimate_matches_measured_peak(smollm2_dir, smol_shape, mode, seq, batch):
    """Peak RSS growth of a fresh process (load + forward, or two LoRA training steps) vs the plan."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, mode, str(seq), str(batch), str(smollm2_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
    plan = plan_memory(
        smol_shape, mode, "bf16", seq, batch, lora_r=16, device="cpu", attention="sdpa" if mode == "inference" else "eager"
    )
    assert abs(plan.model_bytes - measured) <= TOLERANCE * measured, (plan.model_bytes / GB, measured / GB)


def test_train_task_refuses_a_run_that_cannot_fit(project_dir, monkeypatch):
    from tests.conftest import CHAT_TASK
    from tuneloom import load_project
    from tuneloom.train import memory, train_task

    monkeypatch.setattr(memory, "available_memory", lambda: (50 * 1024**2, "RAM"))
    with pytest.raises(memory.InsufficientMemory) as err:
        train_task(load_project(project_dir / "tuneloom.yaml"), CHAT_TASK)
    assert f"task '{CHAT_TASK}'" in str(err.value) and "needs about" in str(err.value) and "only 0.0 GB is free" in str(err.value)
    (run,) = (project_dir / "workspace" / "runs").iterdir()  # refused before the model was loaded
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "InsufficientMemory" in status["error"] and not (run / "model").exists()
