"""A peft LoRA adapter as a llama.cpp LoRA GGUF (general.type=adapter), or the reasons it must be merged.

llama.cpp applies `scale * B @ A` with scale = adapter.lora.alpha / rank, which is plain LoRA. DoRA
(a learned magnitude per column), rsLoRA (alpha / sqrt(rank)), per-module ranks or alphas, trained
biases and adapters that touch or fully retrain embeddings / lm_head have no llama.cpp runtime form,
so `merge_reasons` names them and the export merges instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tuneloom.export.llama import permute_heads
from tuneloom.export.tokenizer import UnsupportedModel

ADAPTER_CONFIG = "adapter_config.json"
_RUNTIME_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<side>[AB])\.weight$")


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def adapter_config(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if data.get("peft_type", "LORA") != "LORA":
        raise UnsupportedModel(f"{folder / ADAPTER_CONFIG}: peft_type {data.get('peft_type')} is not LoRA")
    return data


def _targets(config: dict[str, Any]) -> set[str]:
    targets = config.get("target_modules") or []
    return {targets} if isinstance(targets, str) else set(targets)


def merge_reasons(config: dict[str, Any], tensor_names: list[str]) -> list[str]:
    """Why this adapter cannot run as a llama.cpp LoRA GGUF (empty when it can)."""
    reasons = []
    if config.get("use_dora"):
        reasons.append("DoRA learns a per-column magnitude that llama.cpp LoRA adapters cannot apply")
    if config.get("use_rslora"):
        reasons.append("rsLoRA scales by alpha/sqrt(rank); llama.cpp scales by alpha/rank")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        reasons.append("per-module ranks or alphas: llama.cpp takes one alpha per adapter")
    if config.get("modules_to_save"):
        reasons.append(f"fully trained modules ({', '.join(config['modules_to_save'])}) are not LoRA weights")
    if config.get("bias", "none") != "none":
        reasons.append("trained biases are not LoRA weights")
    modules = {m.split(".")[-1] for m in (_KEY.match(n).group("module") for n in tensor_names if _KEY.match(n))}  # type: ignore[union-attr]
    other = sorted((modules | _targets(config)) - _RUNTIME_MODULES - {"all-linear"})
    if other:
        reasons.append(
            f"LoRA on {', '.join(other)} (embeddings / lm_head / other modules) is not applied by llama.cpp at run time"
        )
    return reasons


def lora_tensors(state: dict[str, Any], config: dict[str, Any], model_config: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for each lora_a / lora_b, with the q/k rows of B permuted like the base."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, model_config["num_hidden_layers"])
    heads = model_config["num_attention_heads"]
    kv_heads = model_config.get("num_key_value_heads") or heads
    out = []
    for key, tensor in sorted(state.items()):
        match = _KEY.match(key)
        if match is None:
            raise UnsupportedModel(f"adapter weight {key} is not a LoRA A/B matrix")
        module = match.group("module")
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None:
            raise UnsupportedModel(f"adapter weight {key} targets a module with no GGUF name")
        array = tensor.float().numpy()
        if match.group("side") == "B" and module.endswith("q_proj"):
            array = permute_heads(array, heads)
        elif match.group("side") == "B" and module.endswith("k_proj"):
            array = permute_heads(array, kv_heads)
        out.append((f"{name}.lora_{match.group('side').lower()}", array))
    return out


def write_lora_gguf(out: Path, adapter_dir: Path, model_config: dict[str, Any], name: str) -> None:
    """Write the adapter in `adapter_dir` (checked with `merge_reasons` first) as a LoRA GGUF."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from safetensors.torch import load_file

    config = adapter_config(adapter_dir)
    state = load_file(str(adapter_dir / "adapter_model.safetensors"))
    reasons = merge_reasons(config, list(state))
    if reasons:
        raise UnsupportedModel(f"{adapter_dir} cannot be a runtime LoRA GGUF: {'; '.join(reasons)}")
    writer = GGUFWriter(str(out), "llama")
    writer.add_type("adapter")
    writer.add_name(name)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config.get("lora_alpha", config.get("r", 8))))
    for gguf_name, array in lora_tensors(state, config, model_config):
        writer.add_tensor(gguf_name, array.astype(np.float32), raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
