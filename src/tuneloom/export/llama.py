"""Hugging Face Llama weights -> a GGUF file llama.cpp loads (what convert_hf_to_gguf.py does for Llama).

Tensor names come from gguf's TensorNameMap; f16 is a plain cast and q8_0 / q4_0 are quantized in
numpy by `gguf.quants`. K-quants (q4_k, q6_k, ...) need llama.cpp's compiled quantizer, which is not
installed here, so they are not offered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tuneloom.export.tokenizer import UnsupportedModel, add_tokenizer

QUANTS = ("f16", "q8_0", "q4_0")
ARCHITECTURES = ("LlamaForCausalLM",)


def qtype(quant: str) -> Any:
    from gguf import GGMLQuantizationType

    return {"f16": GGMLQuantizationType.F16, "q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}[quant]


def file_type(quant: str) -> Any:
    from gguf import LlamaFileType

    return {"f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0, "q4_0": LlamaFileType.MOSTLY_Q4_0}[quant]


def check_config(config: dict[str, Any]) -> None:
    """Refuse what this converter would write wrongly, naming the config.json field."""
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise UnsupportedModel(
            f"config.json architectures: {arch} is not supported by GGUF export (supported: {', '.join(ARCHITECTURES)})"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", "linear"):
        raise UnsupportedModel(
            f"config.json rope_parameters: rope_type {rope.get('rope_type')!r} is not supported (default or linear)"
        )
    for field in ("attention_bias", "mlp_bias"):
        if config.get(field):
            raise UnsupportedModel(f"config.json {field}: true is not supported by GGUF export")


def permute_heads(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k projection rows from HF's rotate-half rope layout to llama.cpp's interleaved one."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def add_hparams(writer: Any, config: dict[str, Any], quant: str) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    if rope.get("rope_type", rope.get("type")) == "linear":
        from gguf import RopeScalingType

        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type(quant))


def gguf_tensors(state: dict[str, Any], config: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for each weight, q/k permuted; a tied lm_head is left out."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModel(f"weight {hf_name} has no GGUF name for a Llama model")
        array = tensor.float().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            array = permute_heads(array, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            array = permute_heads(array, kv_heads)
        yield name, array


def encode(name: str, array: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """The tensor as stored: 1-D tensors stay f32; embeddings keep q8_0 under q4_0 (no K-quant for them here)."""
    from gguf import GGMLQuantizationType, quants

    if array.ndim < 2:
        return array.astype(np.float32), GGMLQuantizationType.F32
    if quant == "q4_0" and name in ("token_embd.weight", "output.weight"):
        quant = "q8_0"
    target = qtype(quant)
    if target != GGMLQuantizationType.F16 and array.shape[-1] % 32:
        target = GGMLQuantizationType.F16  # rows must hold whole 32-value blocks
    if target == GGMLQuantizationType.F16:
        return array.astype(np.float16), target
    return quants.quantize(array, target), target


def write_model_gguf(
    out: Path, state: dict[str, Any], config: dict[str, Any], tokenizer_dir: Path, quant: str, name: str
) -> None:
    """Write `state` (an HF Llama state dict) with its tokenizer and chat template to `out`."""
    from gguf import GGUFWriter

    check_config(config)
    writer = GGUFWriter(str(out), "llama")
    writer.add_type("model")
    writer.add_name(name)
    add_hparams(writer, config, quant)
    add_tokenizer(writer, tokenizer_dir, config["vocab_size"])
    writer.add_quantization_version(2)
    for gguf_name, array in gguf_tensors(state, config):
        data, kind = encode(gguf_name, array, quant)
        writer.add_tensor(gguf_name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
