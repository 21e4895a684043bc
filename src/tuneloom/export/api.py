"""`export_model`: a run or registry version -> GGUF (merged, or base + LoRA adapter), or GGUF + Modelfile.

Files are written under a temporary name and renamed when complete; the manifest (export.json,
with sha256 hashes) is written last, and a registry version gets the manifest as a tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneloom.artifacts import ExportedFile, ExportManifest, write_export
from tuneloom.errors import TuneloomError
from tuneloom.export.llama import QUANTS, write_model_gguf
from tuneloom.export.lora import adapter_config, is_adapter, merge_reasons, write_lora_gguf
from tuneloom.export.source import ExportSource, resolve_source
from tuneloom.export.tokenizer import stop_tokens

FORMATS = ("gguf", "ollama")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_file(target: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` and rename tmp to `target`; nothing is left behind on failure."""
    from tuneloom.atomic import make_private_dirs

    make_private_dirs(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_state(model_dir: Path, base_dir: Path, merge: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, config.json) of the full model: `model_dir` merged into its base, or the base only."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = base_dir if is_adapter(model_dir) else model_dir
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    if merge and is_adapter(model_dir):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return model.state_dict(), config


def plan_mode(source: ExportSource, adapter_only: bool, say: Callable[[str], None]) -> tuple[str, list[str]]:
    """('merged' | 'adapter', reasons an adapter export was merged)."""
    if not adapter_only:
        return "merged", []
    if not is_adapter(source.model_dir):
        raise TuneloomError(f"{source.ref} holds full weights, not an adapter: drop --adapter-only")
    from safetensors import safe_open

    with safe_open(str(source.model_dir / "adapter_model.safetensors"), framework="pt") as fh:
        names = list(fh.keys())
    reasons = merge_reasons(adapter_config(source.model_dir), names)
    if reasons:
        say(f"merging instead of writing a LoRA GGUF: {'; '.join(reasons)}")
        return "merged", reasons
    return "adapter", []


def _tokenizer_dir(source: ExportSource) -> Path:
    return source.model_dir if (source.model_dir / "tokenizer.json").is_file() else source.base_dir


def _entry(folder: Path, path: Path, role: str) -> ExportedFile:
    name = path.name if path.parent == folder else str(path)
    return ExportedFile(path=name, role=role, sha256=sha256_file(path), bytes=path.stat().st_size)


def base_gguf(exports: Path, base_dir: Path, quant: str, say: Callable[[str], None] = lambda _: None) -> Path:
    """The base model's GGUF, written once per base and quant under exports/bases/ and reused by every adapter."""
    stamp = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in sorted(base_dir.glob("*.safetensors")))
    key = hashlib.sha1(f"{base_dir.resolve()}|{stamp}".encode()).hexdigest()[:12]
    target = exports / "bases" / f"{base_dir.name}-{key}-{quant}.gguf"
    if target.is_file():
        say(f"reusing base GGUF {target}")
        return target
    state, config = load_state(base_dir, base_dir, merge=False)
    say(f"writing base GGUF {target}")
    return atomic_file(target, lambda tmp: write_model_gguf(tmp, state, config, base_dir, quant, base_dir.name))


def _write_ggufs(source: ExportSource, folder: Path, quant: str, mode: str, say: Callable[[str], None]) -> list[tuple[Path, str]]:
    tokenizer_dir = _tokenizer_dir(source)
    if mode == "adapter":
        base = base_gguf(folder.parent, source.base_dir, quant, say)
        config = json.loads((source.base_dir / "config.json").read_text(encoding="utf-8"))
        adapter = folder / f"{source.label}-lora.gguf"
        atomic_file(adapter, lambda tmp: write_lora_gguf(tmp, source.model_dir, config, source.label))
        return [(base, "model"), (adapter, "adapter")]
    state, config = load_state(source.model_dir, source.base_dir, merge=True)
    model = folder / f"{source.label}-{quant}.gguf"
    say(f"writing {model}")
    atomic_file(model, lambda tmp: write_model_gguf(tmp, state, config, tokenizer_dir, quant, source.label))
    return [(model, "model")]


def export_model(
    ref: str,
    *,
    format: str = "gguf",
    quant: str = "q8_0",
    adapter_only: bool = False,
    out_dir: Path | None = None,
    workspace: Path | None = None,
    registry_uri: str | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[Path, ExportManifest]:
    """Export a run folder or registry reference; returns (export folder, manifest)."""
    if format not in FORMATS:
        raise TuneloomError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if quant not in QUANTS:
        raise TuneloomError(
            f"--quant {quant!r}: choose one of {', '.join(QUANTS)} (K-quants need llama.cpp's compiled quantizer, not installed)"
        )
    source = resolve_source(ref, workspace, registry_uri)
    mode, reasons = plan_mode(source, adapter_only, say)
    root = workspace if workspace is not None else source.model_dir.parent.parent.parent
    folder = out_dir or root / "exports" / f"{source.label}-{format}-{quant}{'-adapter' if mode == 'adapter' else ''}"
    written = _write_ggufs(source, folder, quant, mode, say)
    stops = stop_tokens(_tokenizer_dir(source))
    if format == "ollama":
        written.append((_modelfile(source, folder, written, stops), "modelfile"))
    manifest = ExportManifest(
        source=source.ref,
        registry_name=source.registry_name,
        registry_version=source.registry_version,
        format=format,
        quant=quant,
        mode=mode,
        merge_reasons=reasons,
        stop_tokens=stops,
        files=[_entry(folder, path, role) for path, role in written],
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    write_export(folder, manifest)
    if source.registry_name is not None and workspace is not None:
        record_export(workspace, registry_uri, manifest)
    return folder, manifest


def _modelfile(source: ExportSource, folder: Path, written: list[tuple[Path, str]], stops: list[str]) -> Path:
    from tuneloom.export.ollama import modelfile, write_modelfile
    from tuneloom.inference import load_tokenizer

    model = next(p for p, role in written if role == "model")
    adapter = next((p for p, role in written if role == "adapter"), None)
    if model.parent != folder:  # a shared base: Ollama wants it next to the Modelfile
        local = folder / model.name
        if not local.exists():
            os.link(model, local)
        model = local
    config = json.loads((source.base_dir / "config.json").read_text(encoding="utf-8"))
    text = modelfile(
        model.name,
        adapter.name if adapter else None,
        load_tokenizer(_tokenizer_dir(source)),
        stops,
        config.get("max_position_embeddings", 2048),
    )
    return write_modelfile(folder, text)


def record_export(workspace: Path, registry_uri: str | None, manifest: ExportManifest) -> None:
    """Tag the registry version with the export (format, quant, mode, files and their sha256)."""
    from tuneloom.registry import ModelRegistry

    assert manifest.registry_name is not None and manifest.registry_version is not None
    key = f"export.{manifest.format}.{manifest.quant}.{manifest.mode}"
    value = json.dumps({"created": manifest.created, "files": [f.model_dump() for f in manifest.files]})
    ModelRegistry(workspace, registry_uri).client.set_model_version_tag(
        manifest.registry_name, str(manifest.registry_version), key, value
    )
