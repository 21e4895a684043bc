"""Many LoRA adapters on one copy of a base model: loaded lazily, evicted least-recently-used.

peft keeps every adapter in one PeftModel; a batch can mix them (`adapter_names=`). Loading and
unloading change the model, so they run only on the engine thread, between steps. Adapters in use
by a waiting or running sequence are pinned and never evicted; the budget counts adapter bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tuneloom.errors import TuneloomError


def _adapter_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def _cast_adapter(model: Any, name: str, dtype: torch.dtype) -> None:
    """Put adapter `name`'s LoRA weights in the activations' dtype. peft keeps them in fp32 (and leaves them there
    over an int8 base), which costs three dtype conversions per adapted layer and token when serving."""
    for module in model.modules():
        for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"):
            holder = getattr(module, part, None)
            if isinstance(holder, torch.nn.ParameterDict) and name in holder:
                holder[name] = torch.nn.Parameter(holder[name].to(dtype), requires_grad=False)
            elif isinstance(holder, torch.nn.ModuleDict) and name in holder:
                holder[name].to(dtype)


class AdapterCache:
    def __init__(self, base_model: Any, budget_bytes: int, on_evict: Callable[[], None] | None = None) -> None:
        self.model = base_model  # becomes a PeftModel with the first adapter
        self.budget_bytes = budget_bytes
        self.on_evict = on_evict
        self._paths: dict[str, Path] = {}
        self._loaded: OrderedDict[str, int] = OrderedDict()  # name -> bytes, least recently used first
        self._pins: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, name: str, path: Path) -> bool:
        """Pin an adapter for a request (any thread); True when it is already loaded (a cache hit)."""
        if not (path / "adapter_model.safetensors").is_file():
            raise TuneloomError(f"adapter {name}: no adapter_model.safetensors in {path} (only safetensors are loaded)")
        with self._lock:
            self._paths[name] = path
            self._pins[name] = self._pins.get(name, 0) + 1
            return name in self._loaded

    def release(self, name: str) -> None:
        with self._lock:
            self._pins[name] -= 1
            if self._pins[name] <= 0:
                del self._pins[name]

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def prepare(self, name: str) -> Any:
        """Load `name` if needed and mark it used (engine thread); returns the model to run."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self.model
            path = self._paths[name]
        with torch.inference_mode(False):  # the engine steps in inference mode; adapter weights must be normal tensors
            if hasattr(self.model, "peft_config"):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        self.model.eval()
        _cast_adapter(self.model, name, self.model.get_input_embeddings().weight.dtype)
        with self._lock:
            self._loaded[name] = _adapter_bytes(path)
            self._evict_locked(keep=name)
        return self.model

    def _evict_locked(self, keep: str) -> None:
        while sum(self._loaded.values()) > self.budget_bytes:
            victim = next((n for n in self._loaded if n != keep and n not in self._pins), None)
            if victim is None:
                return  # everything else is in use: run over budget rather than fail requests
            self.model.delete_adapter(victim)
            del self._loaded[victim]
            if self.on_evict is not None:
                self.on_evict()
