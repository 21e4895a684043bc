"""A Hugging Face BPE tokenizer as GGUF metadata: vocabulary, token types, merges, special tokens, chat template.

llama.cpp's own converter (convert_hf_to_gguf.py) is not part of the `gguf` wheel, so the few steps it
takes for a byte-level BPE tokenizer are written here; merges, special-token ids, add-bos/eos flags and
the chat template come from `gguf.SpecialVocab`, which reads the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneloom.errors import TuneloomError

# llama.cpp picks its pre-tokenizer (the regex that splits text before BPE) by name. Each entry maps a
# tokenizer.json `pre_tokenizer` (canonical JSON) to the llama.cpp name that splits text the same way;
# tests check the token ids of both sides agree. "smollm" is GPT-2's byte-level split without the
# space clean-up on decode, as HF tokenizers do by default.
PRE_TOKENIZERS = {
    json.dumps(
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}, sort_keys=True
    ): "smollm",
}


class UnsupportedModel(TuneloomError):
    """A model or tokenizer this exporter cannot write faithfully."""


def tokenizer_file(folder: Path) -> dict[str, Any]:
    """tokenizer.json of `folder`, or an error saying export needs a fast BPE tokenizer."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedModel(f"{folder} has no tokenizer.json: GGUF export needs a fast (tokenizers) BPE tokenizer")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if (data.get("model") or {}).get("type") != "BPE":
        raise UnsupportedModel(
            f"{path}: tokenizer model {data.get('model', {}).get('type')!r} is not BPE; export supports byte-level BPE"
        )
    return data


def pre_tokenizer_name(data: dict[str, Any], path: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer, or an error naming it."""
    key = json.dumps(data.get("pre_tokenizer"), sort_keys=True)
    if key not in PRE_TOKENIZERS:
        raise UnsupportedModel(
            f"{path}: pre_tokenizer {key} has no known llama.cpp equivalent; supported: {', '.join(PRE_TOKENIZERS.values())}"
        )
    return PRE_TOKENIZERS[key]


def vocab_tokens(data: dict[str, Any], vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens by id and their GGUF token types, padded to the model's vocab_size with unused entries."""
    from gguf import TokenType

    by_id: dict[int, str] = {i: t for t, i in data["model"]["vocab"].items()}
    types = {i: int(TokenType.NORMAL) for i in by_id}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        types[added["id"]] = int(TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED)
    if by_id and max(by_id) >= vocab_size:
        raise UnsupportedModel(f"the tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}")
    tokens, kinds = [], []
    for i in range(vocab_size):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        kinds.append(types.get(i, int(TokenType.UNUSED)))
    return tokens, kinds


def add_tokenizer(writer: Any, folder: Path, vocab_size: int) -> None:
    """Write the tokenizer of `folder` (its tokenizer.json and tokenizer_config.json) into `writer`."""
    from gguf import SpecialVocab

    data = tokenizer_file(folder)
    tokens, kinds = vocab_tokens(data, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(data, folder / "tokenizer.json"))
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    special = SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise UnsupportedModel(f"{folder / 'tokenizer.json'} has no BPE merges")
    if special.chat_template is None:
        raise UnsupportedModel(f"{folder} has no chat template: the GGUF could not render prompts as in training")
    special.add_to_gguf(writer, quiet=True)


def stop_tokens(folder: Path) -> list[str]:
    """The end-of-turn tokens generation stops at: eos, and the tokens generation_config.json lists."""
    data = tokenizer_file(folder)
    by_id = {a["id"]: a["content"] for a in data.get("added_tokens", [])}
    config = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}
    found = [config["eos_token"]] if isinstance(config.get("eos_token"), str) else []
    generation = folder / "generation_config.json"
    ids = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
    for i in [ids] if isinstance(ids, int) else ids or []:
        if i in by_id and by_id[i] not in found:
            found.append(by_id[i])
    return found
