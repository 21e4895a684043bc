"""Static facts about a model folder, read from its config and safetensors headers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel
from safetensors import safe_open

from tuneloom.catalog.entries import CATALOG
from tuneloom.catalog.resolve import resolve_model


class ModelInfo(BaseModel):
    name: str
    path: str
    architecture: str
    model_type: str
    parameters: int
    layers: int | None
    hidden_size: int | None
    vocab_size: int | None
    context_window: int | None
    dtype: str
    license: str
    disk_bytes: int
    chat_template: bool


def _license(folder: Path, ref: str) -> str:
    if ref in CATALOG:
        return CATALOG[ref].license
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace")[:4000], re.MULTILINE)
        if match:
            return match.group(1)
    return "unknown"


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    cfg = folder / "tokenizer_config.json"
    return cfg.is_file() and bool(json.loads(cfg.read_text()).get("chat_template"))


def model_info(ref: str) -> ModelInfo:
    folder = resolve_model(ref)
    config = json.loads((folder / "config.json").read_text())
    params = 0
    dtypes: set[str] = set()
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                sl = fh.get_slice(key)
                dtype = str(sl.get_dtype()).lower()
                if not dtype.startswith(("f", "bf")):  # integer buffers (position ids) are not parameters
                    continue
                numel = 1
                for dim in sl.get_shape():
                    numel *= dim
                params += numel
                dtypes.add(dtype)
    disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return ModelInfo(
        name=ref,
        path=str(folder),
        architecture=(config.get("architectures") or ["unknown"])[0],
        model_type=config.get("model_type", "unknown"),
        parameters=params,
        layers=config.get("num_hidden_layers") or config.get("n_layer"),
        hidden_size=config.get("hidden_size") or config.get("n_embd"),
        vocab_size=config.get("vocab_size"),
        context_window=config.get("max_position_embeddings") or config.get("n_positions"),
        dtype=",".join(sorted(dtypes)) or str(config.get("dtype") or config.get("torch_dtype") or "unknown"),
        license=_license(folder, ref),
        disk_bytes=disk,
        chat_template=_has_chat_template(folder),
    )
