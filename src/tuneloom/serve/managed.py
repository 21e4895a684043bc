"""What the managed-engine backends (llama.cpp, vLLM) share: Tuneloom's front over engine processes.

Each subclass runs its engines as processes and streams one choice per asyncio task; admission against
`max_batch_size + max_queue`, the fan-out of a request's choices, cancellation, and embeddings and
classification (always on transformers) are the same for all of them and live here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tuneloom.config import ServeConfig
from tuneloom.serve.backends import Generation, TransformersBackend
from tuneloom.serve.engine import Overloaded
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import Target


class ManagedEngineBackend:
    def __init__(self, settings: ServeConfig, metrics: ServeMetrics, encoders: TransformersBackend) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encoders = encoders
        self._lock = threading.RLock()
        self._prepare_lock = threading.Lock()  # one export / process start / adapter load at a time
        self._in_flight = 0
        self._closed = threading.Event()
        self._tokenizers: dict[Path, Any] = {}

    def tokenizer(self, target: Target) -> Any:
        """The base's tokenizer, after making the target servable (slow the first time: called off the event loop)."""
        from tuneloom.inference import load_tokenizer

        self._make_ready(target)
        with self._lock:
            if target.base_path not in self._tokenizers:
                self._tokenizers[target.base_path] = load_tokenizer(target.base_path, target.trust_remote_code)
            return self._tokenizers[target.base_path]

    def _make_ready(self, target: Target) -> None:
        """Export, start or load whatever the target needs in the engine (each backend its own)."""
        raise NotImplementedError

    def _admit(self, n: int) -> None:
        """Count `n` sequences in flight, or raise Overloaded (429) past the batch and queue limits (lock held)."""
        limit = self.settings.max_batch_size + self.settings.max_queue
        if self._in_flight + n > limit:
            raise Overloaded(f"{self._in_flight} sequences in flight (limit {limit})", retry_after=2)
        self._in_flight += n

    @staticmethod
    def _fan_out(n: int, choice: Callable[[int, Generation], Coroutine[Any, Any, None]]) -> Generation:
        """A Generation of `n` choices, each streamed by its own task; cancelling it cancels them all."""
        tasks: list[asyncio.Task[None]] = []

        def cancel() -> None:
            for task in tasks:
                task.cancel()

        generation = Generation(n, cancel)
        tasks.extend(asyncio.ensure_future(choice(index, generation)) for index in range(n))
        return generation

    def load(self) -> tuple[int, int]:
        """(sequences in flight, 0): the engines queue internally."""
        return self._in_flight, 0

    def embed(self, target: Target, texts: list[str], max_tokens: int) -> tuple[list[list[float]], int]:
        return self.encoders.embed(target, texts, max_tokens)

    def classify(self, target: Target, texts: list[str], max_tokens: int) -> tuple[list[dict[str, float]], int]:
        return self.encoders.classify(target, texts, max_tokens)
