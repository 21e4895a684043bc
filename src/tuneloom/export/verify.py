"""Load an exported GGUF in llama.cpp (through the `xllamacpp` wheel) and compare it with transformers.

`LlamaCpp` runs llama.cpp's own HTTP server in this process on a loopback port; `logprob_gap` feeds
the same token ids to both and reports how far llama.cpp's top log-probabilities are from the
transformers model's, and whether the greedy tokens agree.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloom.errors import TuneloomError


def quiet_threads(threads: int) -> None:
    """OpenMP settings for llama.cpp on a shared CPU: idle threads sleep instead of spinning.

    Must run before llama.cpp starts its OpenMP runtime (the first model load in the process).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise TuneloomError("llama.cpp support needs xllamacpp: pip install 'tuneloom[llamacpp]'") from None
    return xllamacpp


@dataclass
class LlamaCpp:
    """A running llama.cpp server (in this process) and its loopback address."""

    url: str
    server: Any

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def tokenize(self, text: str) -> list[int]:
        return list(self.post("/tokenize", {"content": text, "add_special": False, "parse_special": True})["tokens"])

    def greedy(self, ids: list[int], n: int, lora: list[dict[str, float]] | None = None, top: int = 5) -> list[dict[str, Any]]:
        """`n` greedy steps after `ids`: per step the chosen id and the top log-probabilities (before sampling)."""
        body: dict[str, Any] = {"prompt": ids, "n_predict": n, "temperature": 0, "n_probs": top, "post_sampling_probs": False}
        if lora is not None:
            body["lora"] = lora
        return list(self.post("/completion", body)["completion_probabilities"])


def server_params(model: Path, loras: Sequence[Path] = (), threads: int = 1, n_ctx: int = 2048, parallel: int = 1) -> Any:
    """xllamacpp parameters: loopback only, `threads` for decode and prompt, LoRAs loaded but not applied."""
    xl = import_xllamacpp()
    params = xl.CommonParams()
    params.model.path = str(model)
    params.n_ctx = n_ctx * parallel
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.lora_init_without_apply = True  # adapters apply per request ("lora": [{"id", "scale"}])
    adapters = []
    for path in loras:
        info = xl.CommonAdapterLoraInfo()
        info.path, info.scale = str(path), 0.0
        adapters.append(info)
    params.lora_adapters = adapters
    return params


@contextmanager
def llamacpp(model: Path, loras: Sequence[Path] = (), threads: int = 1, n_ctx: int = 2048) -> Iterator[LlamaCpp]:
    """llama.cpp serving `model` in this process until the block ends."""
    quiet_threads(threads)
    xl = import_xllamacpp()
    server = xl.Server(server_params(model, loras, threads, n_ctx))
    try:
        yield LlamaCpp(server.listening_address, server)
    finally:
        del server


def logprob_gap(
    model: Any, server: LlamaCpp, ids: list[int], n: int, lora: list[dict[str, float]] | None = None
) -> tuple[float, bool]:
    """(largest |log-prob difference| over llama.cpp's top tokens, greedy tokens equal) for `n` steps after `ids`."""
    import torch

    steps = server.greedy(ids, n, lora)
    generated = [step["id"] for step in steps]
    with torch.inference_mode():
        logprobs = model(torch.tensor([ids + generated])).logits[0].float().log_softmax(-1)
    gap, same = 0.0, True
    for k, step in enumerate(steps):
        row = logprobs[len(ids) - 1 + k]
        same = same and int(row.argmax()) == step["id"]
        for top in step["top_logprobs"]:
            gap = max(gap, abs(float(row[top["id"]]) - float(top["logprob"])))
    return gap, same
