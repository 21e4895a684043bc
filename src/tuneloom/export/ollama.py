"""An Ollama Modelfile for an exported GGUF: template, default system prompt, stop tokens, parameters.

Ollama templates are Go templates, not Jinja. When the model's Jinja chat template renders exactly as
ChatML (checked on sample conversations), the Modelfile carries the ChatML Go template and the
template's default system prompt; otherwise TEMPLATE is left out and Ollama derives the template
from the chat template stored in the GGUF metadata, which the Modelfile says in a comment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
_SAMPLES = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}, {"role": "user", "content": "C"}],
]


def _chatml(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def chatml_system(tokenizer: Any) -> tuple[bool, str | None]:
    """(renders as ChatML, the default system prompt it adds when a conversation has none)."""
    rendered = tokenizer.apply_chat_template(_SAMPLES[0], tokenize=False, add_generation_prompt=True)
    prefix = "<|im_start|>system\n"
    default = rendered[len(prefix) :].split("<|im_end|>")[0] if rendered.startswith(prefix) else None
    for sample in _SAMPLES:
        has_system = sample[0]["role"] == "system"
        full = sample if has_system or default is None else [{"role": "system", "content": default}, *sample]
        if tokenizer.apply_chat_template(sample, tokenize=False, add_generation_prompt=True) != _chatml(full):
            return False, None
    return True, default


def modelfile(model_file: str, adapter_file: str | None, tokenizer: Any, stops: list[str], context: int) -> str:
    """The Modelfile text for `model_file` (and `adapter_file`), both relative to the Modelfile."""
    lines = [f"FROM ./{model_file}"]
    if adapter_file is not None:
        lines.append(f"ADAPTER ./{adapter_file}")
    is_chatml, system = chatml_system(tokenizer)
    if is_chatml:
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
        if system:
            lines.append(f'SYSTEM """{system}"""')
    else:
        lines.append("# TEMPLATE left out: Ollama reads the chat template stored in the GGUF (tokenizer.chat_template)")
    lines.extend(f"PARAMETER stop {json.dumps(stop)}" for stop in stops)
    lines.append(f"PARAMETER num_ctx {context}")
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def write_modelfile(folder: Path, text: str) -> Path:
    from tuneloom.atomic import write_text_atomic

    path = folder / "Modelfile"
    write_text_atomic(path, text)
    return path
