"""Continuous batching for a transformers causal LM, with a different LoRA adapter per sequence.

One thread owns the model. Each step it admits waiting sequences (prefilled together, left-padded),
joins them to the running batch by left-padding the shorter KV cache, decodes one token for every
running sequence in a single forward pass (peft's `adapter_names=` routes each row through its own
adapter, `__base__` through none), and drops finished, cancelled or timed-out sequences at the token
boundary. Hand-written because transformers' own continuous-batching manager neither takes a
per-row adapter nor runs on a CPU without its paged-attention kernels.

Caches whose layers are not plain full-attention layers (sliding windows, recurrent state) cannot
be joined by padding; for those models new sequences wait until the running batch has finished.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneloom.errors import TuneloomError

log = logging.getLogger("tuneloom.serve")
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in adapter_names


class Overloaded(TuneloomError):
    """The queue is full: the caller should answer 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Event:
    """What a sequence produced since the last event: new text, and why it ended (or None)."""

    index: int
    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0


@dataclass
class Sequence:
    """One choice of one request, as the scheduler sees it."""

    index: int
    prompt_ids: list[int]
    adapter: str | None  # peft adapter name in this engine, None = the base model
    params: SamplingParams
    emit: Callable[[Event], None]
    deadline: float
    out_ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already emitted
    cancelled: bool = False
    finish_reason: str | None = None
    admitted_at: float = 0.0  # time.monotonic() when it joined the batch
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        seed = self.params.seed + self.index if self.params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.generator.manual_seed(seed)


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Greedy at temperature 0, else temperature and nucleus (top_p) sampling with the sequence's generator."""
    if params.temperature <= 1e-5:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < params.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class BatchEngine:
    """The scheduler thread for one base model; adapters come and go through `prepare_adapter`."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int,
        max_queue: int,
        prepare_adapter: Callable[[str], Any] | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.model = model  # a transformers model, or a PeftModel around it once adapters are loaded
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.prepare_adapter = prepare_adapter  # loads an adapter, returns the model to run; on this thread only
        self.on_step = on_step  # (batch size, waiting) after every decode step, for metrics
        eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
        self.eos_ids = {*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tokenizer.eos_token_id} - {None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._admitted: list[Sequence] = []  # taken from the queue, not yet in the batch
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._step_time = 0.05
        self._service_s: float | None = None  # recent time a sequence spends in the batch (moving average)
        # transformers 5.x renamed `past_key_values` to `cache` (the old name goes away in 5.40)
        self.device = next(self._config_model().parameters()).device
        forward = self._config_model().forward
        self._cache_arg = "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
        self._thread = threading.Thread(target=self._loop, name="tuneloom-batch-engine", daemon=True)
        self._thread.start()

    # -- public, called from other threads ------------------------------------------------------

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue a request's sequences, or raise Overloaded (429) when the queue is full or the predicted
        wait plus one service time would not end before the request's deadline."""
        with self._cond:
            if self._stop:
                raise Overloaded("the server is shutting down", retry_after=5)
            free = max(0, self.max_batch_size - len(self._running) - len(self._admitted))
            if len(self._waiting) + len(seqs) > self.max_queue + free:
                raise Overloaded(
                    f"{len(self._waiting)} sequences are already waiting (queue limit {self.max_queue})",
                    retry_after=self.retry_after(),
                )
            wait, service = self._predicted_wait(len(seqs) - free), self._service_s or 0.0
            if wait and wait + service > min(s.deadline for s in seqs) - time.monotonic():
                raise Overloaded(
                    f"the predicted wait of {wait:.0f} s plus {service:.1f} s to answer exceeds the request timeout",
                    retry_after=max(1, min(60, math.ceil(service))),
                )
            self._waiting.extend(seqs)
            self._cond.notify()

    def _predicted_wait(self, beyond_free: int) -> float:
        """Seconds before the last of `beyond_free` new sequences past the free batch slots starts:
        the queue ahead of it drains a batch per recent service time (0 while nothing is measured)."""
        ahead = len(self._waiting) + beyond_free
        if ahead <= 0 or self._service_s is None:
            return 0.0
        return math.ceil(ahead / self.max_batch_size) * self._service_s

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: one recent service time, or one typical generation at the step time."""
        return max(1, min(60, math.ceil(self._service_s) if self._service_s is not None else round(self._step_time * 64)))

    @property
    def load(self) -> tuple[int, int]:
        """(running, waiting) sequences."""
        return len(self._running), len(self._waiting)

    def cancel(self, seqs: list[Sequence]) -> None:
        for s in seqs:
            s.cancelled = True  # dropped at the next token boundary
        with self._cond:
            self._cond.notify()

    def close(self, grace_s: float = 0.0) -> None:
        """Stop taking work; let running sequences finish for up to `grace_s`, then end the rest."""
        deadline = time.monotonic() + grace_s
        while (self._running or self._waiting or self._admitted) and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._waiting and not self._running:
                    self._cond.wait()
                if self._stop:
                    break
                admitted = self._admitted = self._admit_locked()
            try:
                self._drop_finished()
                if admitted:
                    self._prefill(admitted)
                    self._admitted = []
                    self._drop_finished()
                if self._running:
                    started = time.perf_counter()
                    self._decode()
                    self._step_time = 0.8 * self._step_time + 0.2 * (time.perf_counter() - started)
                if self.on_step is not None:
                    self.on_step(len(self._running), len(self._waiting))
            except Exception:  # a failed step ends its sequences, never the engine
                log.exception("generation step failed")
                for s in [*admitted, *self._running]:
                    if s.finish_reason is None:
                        s.finish_reason = "error"
                        s.emit(Event(s.index, "", "error", len(s.out_ids)))
                self._running, self._cache, self._mask, self._admitted = [], None, None, []
        for s in [*self._running, *self._waiting]:
            s.emit(Event(s.index, "", "shutdown", len(s.out_ids)))

    def _joinable(self) -> bool:
        from transformers.cache_utils import DynamicLayer

        return self._cache is None or all(type(layer) is DynamicLayer for layer in self._cache.layers)

    def _admit_locked(self) -> list[Sequence]:
        if self._running and not self._joinable():
            return []
        admitted: list[Sequence] = []
        now = time.monotonic()
        while self._waiting and len(self._running) + len(admitted) < self.max_batch_size:
            s = self._waiting.popleft()
            if s.cancelled or now > s.deadline:
                s.finish_reason = "cancelled" if s.cancelled else "timeout"
                s.emit(Event(s.index, "", s.finish_reason, 0))
                continue
            s.admitted_at = now
            admitted.append(s)
        return admitted

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, adapters: list[str | None]
    ) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {}
        if hasattr(self.model, "peft_config"):
            names = {a or BASE_ADAPTER for a in adapters}
            if len(names) == 1 and BASE_ADAPTER not in names:
                # One adapter for the whole batch (always so at concurrency 1): run it as peft's active adapter.
                # `adapter_names=` walks every module twice per forward to set and clear routing hooks, which
                # cost about a fifth of a decode step on a 135M model; switching the active adapter walks them once.
                (name,) = names
                if self.model.active_adapter != name:
                    self.model.set_adapter(name, inference_mode=True)
            else:
                kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
        kwargs[self._cache_arg] = cache
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **kwargs)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        return out.logits[:, -1, :], cache

    @torch.inference_mode()
    def _prefill(self, seqs: list[Sequence]) -> None:
        from transformers import DynamicCache

        for s in seqs:
            if s.adapter is not None and self.prepare_adapter is not None:
                self.model = self.prepare_adapter(s.adapter)
        width = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, width - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids)
            mask[row, width - len(s.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, positions, DynamicCache(config=self._config()), [s.adapter for s in seqs])
        self._join(seqs, cache, mask)
        self._accept(seqs, logits)

    def _config_model(self) -> Any:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def _config(self) -> Any:
        return self._config_model().config

    def _join(self, seqs: list[Sequence], cache: Any, mask: torch.Tensor) -> None:
        """Append prefilled sequences to the running batch, left-padding whichever cache is shorter."""
        if self._cache is None or self._mask is None or not self._running:  # the mask is set whenever the cache is
            self._running, self._cache, self._mask = list(seqs), cache, mask
            return
        old, new = self._mask.shape[1], mask.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self._cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self._mask = torch.cat([_left_pad_mask(self._mask, width), _left_pad_mask(mask, width)])
        self._running.extend(seqs)

    @torch.inference_mode()
    def _decode(self) -> None:
        assert self._mask is not None  # set whenever sequences are running
        last = torch.tensor([[s.out_ids[-1]] for s in self._running], device=self.device)
        positions = self._mask.sum(-1, keepdim=True)
        self._mask = torch.cat([self._mask, torch.ones((len(self._running), 1), dtype=torch.long, device=self.device)], dim=1)
        logits, self._cache = self._forward(last, self._mask, positions, self._cache, [s.adapter for s in self._running])
        self._accept(self._running, logits)

    def _accept(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        """Sample each sequence's next token, emit its new text, mark why it ended if it did."""
        now = time.monotonic()
        logits = logits.float().cpu()  # sampling uses each sequence's CPU generator
        for row, s in enumerate(seqs):
            if s.finish_reason is not None:
                continue
            token = sample(logits[row], s.params, s.generator)
            s.out_ids.append(token)
            done = None
            if token in self.eos_ids:
                s.out_ids.pop()
                done = "stop"
            elif len(s.out_ids) >= s.params.max_tokens:
                done = "length"
            text = self.tokenizer.decode(s.out_ids, skip_special_tokens=True)
            for stop in s.params.stop:
                at = text.find(stop)
                if at >= 0:
                    text, done = text[:at], "stop"
            if done is None and (s.cancelled or now > s.deadline):
                done = "cancelled" if s.cancelled else "timeout"
            if done is None:
                hold = max((len(x) for x in s.params.stop), default=1) - 1  # a stop string may be starting
                upto = len(text) - hold
                if text.endswith("\ufffd"):  # half a UTF-8 character
                    upto = min(upto, len(text) - 1)
                if upto > s.sent:
                    s.emit(Event(s.index, text[s.sent : upto], None, len(s.out_ids)))
                    s.sent = upto
            else:
                s.finish_reason = done
                s.emit(Event(s.index, text[s.sent :], done, len(s.out_ids)))
                s.sent = len(text)

    def _drop_finished(self) -> None:
        """Remove ended sequences from the batch and trim padding no remaining sequence needs."""
        now = time.monotonic()
        for s in self._running:
            if s.finish_reason is None and (s.cancelled or now > s.deadline):
                s.finish_reason = "cancelled" if s.cancelled else "timeout"
                s.emit(Event(s.index, "", s.finish_reason, len(s.out_ids)))
        keep = [i for i, s in enumerate(self._running) if s.finish_reason is None]
        if len(keep) == len(self._running):
            return
        for s in self._running:
            if s.finish_reason in ("stop", "length"):
                spent = now - s.admitted_at
                self._service_s = spent if self._service_s is None else 0.8 * self._service_s + 0.2 * spent
        self._running = [self._running[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        assert self._mask is not None  # set whenever sequences are running
        index = torch.tensor(keep, device=self.device)
        self._mask = self._mask[index]
        start = int((self._mask.sum(0) > 0).nonzero()[0])
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, heads, length, dim) -> (batch, heads, width, dim) with zeros on the left."""
    missing = width - t.shape[2]
    return t if missing == 0 else torch.nn.functional.pad(t, (0, 0, missing, 0))


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    return mask if missing == 0 else torch.nn.functional.pad(mask, (missing, 0))
