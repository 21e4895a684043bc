"""GGUF export: tiny Llama and packaged SmolLM2 against transformers in llama.cpp (xllamacpp), LoRA GGUFs,
merges with reasons, quantization, Ollama Modelfile, registry records and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tuneloom.artifacts import read_export
from tuneloom.cli import app
from tuneloom.errors import TuneloomError
from tuneloom.export import UnsupportedModel, export_model
from tuneloom.export.api import sha256_file
from tuneloom.export.llama import check_config, write_model_gguf
from tuneloom.export.lora import merge_reasons
from tuneloom.export.verify import llamacpp, logprob_gap

pytest.importorskip("xllamacpp")
runner = CliRunner()
QUESTION = [{"role": "user", "content": "How do I reset my Doorbell Pro? It keeps blinking red."}]
F16_GAP = 0.02  # f16 weights: llama.cpp's top log-probs within this of transformers' fp32 ones


def _prompt_ids(folder: Path) -> tuple[str, list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def _model(folder: Path, adapter: Path | None = None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return model


def _write(folder: Path, out: Path, quant: str) -> Path:
    model = _model(folder)
    config = json.loads((folder / "config.json").read_text())
    write_model_gguf(out, model.state_dict(), config, folder, quant, "test")
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_llama_dir, tiny_bert_dir) -> Path:
    """A finished chat run on the tiny Llama with a real, non-zero LoRA adapter on every projection."""
    from peft import LoraConfig, get_peft_model

    from tests.registry.test_registry import make_run
    from tuneloom.artifacts import read_snapshot, write_snapshot

    root = tmp_path_factory.mktemp("export")
    project_file = write_project(root, tiny_llama_dir, tiny_bert_dir)
    run = make_run(root / "workspace", project_file, CHAT_TASK, "20260101-100000", gate=True, seed=1)
    snapshot = read_snapshot(run)
    write_snapshot(run, snapshot.model_copy(update={"base_model_path": str(tiny_llama_dir)}))
    shutil.rmtree(run / "model")
    torch.manual_seed(1)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(_model(tiny_llama_dir), config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.0).add_(torch.randn_like(param) * 0.5)  # big enough to change the answers
    model.save_pretrained(run / "model")
    return run


def test_tiny_llama_f16_matches_transformers_and_tokenizes_the_same(tiny_llama_dir, tmp_path):
    from gguf import GGUFReader

    gguf = _write(tiny_llama_dir, tmp_path / "tiny.gguf", "f16")
    fields = GGUFReader(gguf).fields
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 2
    text, ids = _prompt_ids(tiny_llama_dir)
    with llamacpp(gguf) as server:
        assert server.tokenize(text) == ids  # the chat prompt renders and tokenizes as in training
        gap, _ = logprob_gap(_model(tiny_llama_dir), server, ids, 6)
    assert gap < F16_GAP, gap


@pytest.mark.slow
def test_packaged_smollm2_f16_logits_and_greedy_answer_match(smollm2_dir, tmp_path):
    gguf = _write(smollm2_dir, tmp_path / "smollm2.gguf", "f16")
    _, ids = _prompt_ids(smollm2_dir)
    with llamacpp(gguf) as server:
        gap, same = logprob_gap(_model(smollm2_dir), server, ids, 12)
    assert gap < F16_GAP * 3, gap  # 30 layers of f16 rounding
    assert same


def test_quantized_exports_are_smaller_and_still_answer(tiny_llama_dir, tmp_path):
    sizes = {q: _write(tiny_llama_dir, tmp_path / f"{q}.gguf", q).stat().st_size for q in ("f16", "q8_0", "q4_0")}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"]
    _, ids = _prompt_ids(tiny_llama_dir)
    with llamacpp(tmp_path / "q8_0.gguf") as server:
        gap, _ = logprob_gap(_model(tiny_llama_dir), server, ids, 4)
    assert gap < 0.1, gap


def test_adapter_gguf_at_run_time_answers_as_the_merged_export(tiny_run):
    folder, manifest = export_model(str(tiny_run), quant="f16", adapter_only=True)
    assert manifest.mode == "adapter" and [f.role for f in manifest.files] == ["model", "adapter"]
    base = Path(manifest.files[0].path)
    assert base.parent.name == "bases" and sha256_file(base) == manifest.files[0].sha256
    merged_folder, merged = export_model(str(tiny_run), quant="f16")
    assert merged.mode == "merged" and read_export(merged_folder) == merged
    _, ids = _prompt_ids(_base(tiny_run))
    tuned = _model(_base(tiny_run), tiny_run / "model")
    with llamacpp(base, [folder / manifest.files[1].path]) as server:
        with_lora = server.greedy(ids, 8, lora=[{"id": 0, "scale": 1.0}])
        without = server.greedy(ids, 8, lora=[{"id": 0, "scale": 0.0}])
        gap, _ = logprob_gap(tuned, server, ids, 8, lora=[{"id": 0, "scale": 1.0}])
    with llamacpp(merged_folder / merged.files[0].path) as server:
        as_merged = server.greedy(ids, 8)
    assert [s["id"] for s in with_lora] == [s["id"] for s in as_merged]
    assert [s["id"] for s in with_lora] != [s["id"] for s in without]  # the adapter does change the answer
    assert gap < F16_GAP, gap


def _base(run: Path) -> Path:
    from tuneloom.artifacts import read_snapshot

    return Path(read_snapshot(run).base_model_path)


def test_dora_rslora_and_embedding_adapters_are_merged_with_the_reason():
    lora = ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    assert merge_reasons({"target_modules": ["q_proj"]}, lora) == []
    assert "DoRA" in merge_reasons({"use_dora": True}, lora)[0]
    assert "rsLoRA" in merge_reasons({"use_rslora": True}, lora)[0]
    assert "embed_tokens" in " ".join(merge_reasons({"target_modules": ["q_proj", "embed_tokens"]}, lora))
    assert "lm_head" in " ".join(merge_reasons({"modules_to_save": ["lm_head"]}, lora))


def test_a_dora_run_exported_adapter_only_is_merged_and_says_why(tiny_run, tmp_path):
    run = tmp_path / "runs" / "dora"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    (run / "model" / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    said: list[str] = []
    _, manifest = export_model(str(run), quant="q8_0", adapter_only=True, say=said.append)
    assert manifest.mode == "merged" and "rsLoRA" in manifest.merge_reasons[0]
    assert any("rsLoRA" in s for s in said)


def test_ollama_export_writes_a_chatml_modelfile_with_stops(tiny_run, tmp_path):
    folder, manifest = export_model(str(tiny_run), format="ollama", quant="q4_0", out_dir=tmp_path / "ollama")
    text = (folder / "Modelfile").read_text()
    assert text.startswith(f"FROM ./{manifest.files[0].path}\n")
    assert "<|im_start|>{{ .Role }}" in text and 'SYSTEM """You are a helpful AI assistant named SmolLM' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert manifest.files[-1].role == "modelfile" and manifest.files[-1].sha256 == sha256_file(folder / "Modelfile")


def test_cli_exports_a_registry_version_and_records_it(tiny_run):
    from tuneloom.registry import ModelRegistry

    workspace = tiny_run.parent.parent
    project_file = workspace.parent / "tuneloom.yaml"
    registry = ModelRegistry(workspace)
    registry.register_run(tiny_run, "support-qa")
    registry.promote("support-qa", 1)
    result = runner.invoke(app, ["export", "support-qa@production", "--quant", "q8_0", "-c", str(project_file)])
    assert result.exit_code == 0, result.output
    folder = workspace / "exports" / "support-qa-v1-gguf-q8_0"
    manifest = read_export(folder)
    assert (manifest.registry_name, manifest.registry_version) == ("support-qa", 1)
    tag = json.loads(registry.get("support-qa:1").tags["export.gguf.q8_0.merged"])
    assert tag["files"][0]["sha256"] == sha256_file(folder / manifest.files[0].path)


def test_bad_requests_are_refused_with_the_fix(tiny_run, tmp_path):
    with pytest.raises(TuneloomError, match="choose one of f16, q8_0, q4_0"):
        export_model(str(tiny_run), quant="q4_k_m")
    with pytest.raises(TuneloomError, match="registry reference|project file"):
        export_model("support-qa@production")
    with pytest.raises(UnsupportedModel, match="architectures: GPT2LMHeadModel"):
        check_config({"architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(UnsupportedModel, match="rope_type 'llama3'"):
        check_config({"architectures": ["LlamaForCausalLM"], "rope_parameters": {"rope_type": "llama3"}})
    assert not list(tmp_path.glob("**/*.tmp"))
