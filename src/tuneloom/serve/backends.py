"""Backends that run the models: transformers (everywhere), vLLM (`tuneloom.serve.vllm`, managed vLLM server
processes from vLLM's own environment, GPU or CPU) and llama.cpp (`tuneloom.serve.llamacpp`, managed
processes on GGUF exports).

All offer the same `start(target, prompt_ids, params, n, deadline) -> Generation` for chat and text
completions; embeddings and classification always run on transformers (vLLM is for generation here).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import torch

from tuneloom.config import ServeConfig
from tuneloom.errors import TuneloomError
from tuneloom.serve.adapters import AdapterCache
from tuneloom.serve.engine import BatchEngine, Event, Overloaded, SamplingParams, Sequence
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import Target

log = logging.getLogger("tuneloom.serve")


def select_backend(choice: str, *, vllm_python: str | None = None, gpu: bool | None = None) -> str:
    """The backend `serve.backend` names; auto: vllm when it can run (`serve.vllm_python` or an importable vllm)
    and a GPU is visible, else transformers. Asking for one that cannot run is an error saying how to fix it."""
    if choice in ("transformers", "llamacpp", "vllm"):
        if choice == "llamacpp" and importlib.util.find_spec("xllamacpp") is None:
            raise TuneloomError("serve.backend is llamacpp but xllamacpp is not installed: pip install 'tuneloom[llamacpp]'")
        if choice == "vllm":
            from tuneloom.serve.vllm import vllm_interpreter

            vllm_interpreter(vllm_python)  # raises, saying how to build vLLM's environment
        return choice
    if not (torch.cuda.is_available() if gpu is None else gpu):
        return "transformers"
    from tuneloom.serve.vllm import vllm_interpreter

    try:
        vllm_interpreter(vllm_python)
    except TuneloomError:
        return "transformers"
    return "vllm"


def adapter_key(path: Path) -> str:
    """A peft-safe adapter name for a folder (peft names cannot hold '.', registry names can)."""
    return "a" + hashlib.sha1(str(path).encode()).hexdigest()[:16]


class Generation:
    """The events of one request's n sequences, as an async iterator; `cancel()` stops them."""

    def __init__(self, n: int, on_cancel: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.remaining = n
        self.first_token_at: float | None = None
        self._on_cancel = on_cancel

    def emit(self, event: Event) -> None:  # any thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def events(self) -> AsyncIterator[Event]:
        while self.remaining:
            event = await self.queue.get()
            if self.first_token_at is None and (event.text or event.completion_tokens):
                self.first_token_at = time.monotonic()
            if event.finish_reason is not None:
                self.remaining -= 1
            yield event

    def cancel(self) -> None:
        if self.remaining:
            self._on_cancel()


@functools.lru_cache(maxsize=64)
def _pooling_of(path: Path) -> tuple[str, bool]:
    """`pooled_head.model_pooling`, read once per model folder rather than on every embeddings request."""
    from tuneloom.pooled_head import model_pooling

    return model_pooling(path)


def decode_in_int8(setting: str, gpu: bool) -> bool:
    """`serve.decode_weights`: int8 weight-only decoding on CPUs unless `model` is asked for; never on a GPU."""
    if gpu and setting == "int8":
        raise TuneloomError("serve.decode_weights: int8 is the CPU decoding path; use auto or model on a GPU")
    return not gpu and setting in ("auto", "int8")


class _ChatModel:
    """One base model in memory: tokenizer, adapters, and its batching engine."""

    def __init__(self, target: Target, settings: ServeConfig, metrics: ServeMetrics) -> None:
        from transformers import AutoModelForCausalLM

        from tuneloom.inference import load_tokenizer, model_dtype
        from tuneloom.train.common import choose_precision

        dtype = model_dtype(choose_precision(settings.precision))
        self.tokenizer = load_tokenizer(target.base_path, target.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            target.base_path, dtype=dtype, use_safetensors=True, trust_remote_code=target.trust_remote_code
        ).eval()
        gpu = torch.cuda.is_available()
        if gpu:
            model.to("cuda")
        if decode_in_int8(settings.decode_weights, gpu):
            from tuneloom.serve.int8 import quantize_decoder

            log.info("int8 weight-only decoding: %d linears of %s", quantize_decoder(model), target.served)
        self.adapters = AdapterCache(model, int(settings.adapter_memory_mb * 2**20), metrics.adapter_evictions.inc)
        self.engine = BatchEngine(
            model,
            self.tokenizer,
            max_batch_size=settings.max_batch_size,
            max_queue=settings.max_queue,
            prepare_adapter=self.adapters.prepare,
            on_step=metrics.on_step,
        )


class TransformersBackend:
    name = "transformers"

    def __init__(self, settings: ServeConfig, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)
        self._chat: dict[Path, _ChatModel] = {}
        self._encoders: OrderedDict[tuple[Path, Path | None], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._encoder_lock = threading.Lock()
        self._load_lock = threading.Lock()  # one model load at a time: transformers imports model code lazily

    def chat_model(self, target: Target) -> _ChatModel:
        """The base model's engine, loaded on first use (slow: call it off the event loop)."""
        with self._lock:
            if target.base_path not in self._chat:
                with self._load_lock:
                    self._chat[target.base_path] = _ChatModel(target, self.settings, self.metrics)
            return self._chat[target.base_path]

    def tokenizer(self, target: Target) -> Any:
        return self.chat_model(target).tokenizer

    def start(self, target: Target, prompt_ids: list[int], params: SamplingParams, n: int, deadline: float) -> Generation:
        chat = self.chat_model(target)
        path = target.adapter_path
        adapter = adapter_key(path) if path is not None else None
        if adapter is not None and path is not None:
            hit = [chat.adapters.acquire(adapter, path) for _ in range(n)][0]  # one pin per sequence
            self.metrics.adapter_cache.labels("hit" if hit else "miss").inc()

        def done(event: Event) -> None:
            generation.emit(event)
            if event.finish_reason is not None and adapter is not None:
                chat.adapters.release(adapter)

        seqs = [
            Sequence(index=i, prompt_ids=prompt_ids, adapter=adapter, params=params, emit=done, deadline=deadline)
            for i in range(n)
        ]
        generation = Generation(n, lambda: chat.engine.cancel(seqs))
        try:
            chat.engine.submit(seqs)
        except Overloaded:
            for _ in range(n if adapter is not None else 0):
                chat.adapters.release(adapter)  # type: ignore[arg-type]  # loops only when adapter is not None
            raise
        return generation

    def load(self) -> tuple[int, int]:
        """(running, waiting) sequences over every engine."""
        loads = [c.engine.load for c in list(self._chat.values())]
        return sum(r for r, _ in loads), sum(w for _, w in loads)

    # -- encoders: embeddings and classification (small models; one call at a time) ------------

    def _encoder(self, target: Target) -> tuple[Any, Any]:
        key = (target.base_path, target.adapter_path)
        if key in self._encoders:
            self._encoders.move_to_end(key)
            return self._encoders[key]
        with self._load_lock:
            self._encoders[key] = self._load_encoder(target)
        while len(self._encoders) > 4:
            self._encoders.popitem(last=False)
        return self._encoders[key]

    def _load_encoder(self, target: Target) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        from tuneloom.inference import attach_adapter, load_classifier

        tokenizer = AutoTokenizer.from_pretrained(target.base_path, trust_remote_code=target.trust_remote_code)
        if target.kind == "embedding":
            model = AutoModel.from_pretrained(target.base_path, trust_remote_code=target.trust_remote_code, use_safetensors=True)
            if target.adapter_path is not None:
                model = attach_adapter(model, target.adapter_path)
        else:
            model = load_classifier(
                target.base_path,
                target.adapter_path,
                list(target.labels),
                target.trust_remote_code,
                pad_token_id=tokenizer.pad_token_id,
                use_safetensors=True,
            )
        return tokenizer, model.eval()

    @torch.inference_mode()
    def embed(self, target: Target, texts: list[str], max_tokens: int) -> tuple[list[list[float]], int]:
        """Embeddings pooled as the model was trained to be (`pooled_head.model_pooling`), and the token count."""
        from tuneloom.pooled_head import pool

        with self._encoder_lock:
            tokenizer, model = self._encoder(target)
            batch = tokenizer(
                texts, padding=True, truncation=True, max_length=min(max_tokens, tokenizer.model_max_length), return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
        pooling, normalize = _pooling_of(target.base_path)
        pooled = pool(hidden, batch["attention_mask"], pooling).float()
        vectors = torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled
        return vectors.tolist(), int(batch["attention_mask"].sum())

    @torch.inference_mode()
    def classify(self, target: Target, texts: list[str], max_tokens: int) -> tuple[list[dict[str, float]], int]:
        """Per text, the probability of each label; and the token count."""
        with self._encoder_lock:
            tokenizer, model = self._encoder(target)
            batch = tokenizer(
                texts, padding=True, truncation=True, max_length=min(max_tokens, tokenizer.model_max_length), return_tensors="pt"
            )
            probs = model(**batch).logits.float().softmax(-1)
        return [dict(zip(target.labels, row)) for row in probs.tolist()], int(batch["attention_mask"].sum())

    def close(self, grace_s: float) -> None:
        for chat in list(self._chat.values()):
            chat.engine.close(grace_s)


def import_model_libraries() -> None:
    """Import what loading a model needs, once at start-up: a module imported by several request
    threads at once can be seen half-initialised by all but one of them."""
    import peft  # noqa: F401  # imported for its side effect: fully initialised before requests
    import transformers
    from transformers import cache_utils  # noqa: F401  # same: generation imports it lazily

    from tuneloom import inference  # noqa: F401  # same: the model loaders
    from tuneloom.train import common  # noqa: F401  # same: peft and bitsandbytes through it

    for name in ("AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoTokenizer", "DynamicCache"):
        getattr(transformers, name)  # transformers' lazy module imports each on first access


def make_backend(settings: ServeConfig, metrics: ServeMetrics, workspace: Path | None = None) -> Any:
    """The backend `serve.backend` selects; llamacpp keeps its GGUF exports under `workspace`/exports."""
    transformers_backend = TransformersBackend(settings, metrics)
    chosen = select_backend(settings.backend, vllm_python=settings.vllm_python)
    if chosen == "vllm":
        from tuneloom.serve.vllm import VllmBackend

        return VllmBackend(settings, metrics, transformers_backend, workspace or Path.cwd())
    if chosen == "llamacpp":
        from tuneloom.serve.llamacpp import LlamaCppBackend

        return LlamaCppBackend(settings, metrics, transformers_backend, workspace or Path.cwd())
    return transformers_backend
