"""Retrieval for the server: open knowledge bases, swapped for a new build without a restart.

Each knowledge base is opened once (its store and embedder) and shared by every request. Every
`serve.knowledge_check_s` a request looks at the store's metadata; when a build or update has changed
its content version or embedder, a new handle is opened in the background and swapped in. Requests
hold a lease on the handle they started with, so the old one is closed only once its last request
is done. A search that fails on an old handle (its table was dropped by a rebuild) is retried once
on a freshly opened one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Filter, Hit
from tuneloom.serve.metrics import ServeMetrics

log = logging.getLogger("tuneloom.serve.knowledge")

Opener = Callable[[str], Any]  # knowledge base name -> an opened index (`tuneloom.knowledge.KnowledgeIndex`)


class KnowledgeUnavailable(TuneloomError):
    """A knowledge base that cannot be opened or searched right now (answered with 503)."""


@dataclass
class _Handle:
    index: Any
    version: tuple[str, str]  # (content_version, embedder_hash) it was opened at
    users: int = 0
    retired: bool = False
    opened: float = field(default_factory=time.monotonic)


def _version(meta: Any) -> tuple[str, str]:
    return (meta.content_version, meta.embedder_hash) if meta is not None else ("", "")


def open_for(project: Project) -> Opener:
    """The production opener: `tuneloom.knowledge.open_index` on the server's project."""

    def opener(name: str) -> Any:
        from tuneloom.knowledge import open_index

        return open_index(project, name)

    return opener


class KnowledgeService:
    """The server's open knowledge bases; thread-safe (searches run in the thread pool)."""

    def __init__(self, opener: Opener, metrics: ServeMetrics, check_s: float) -> None:
        self._open = opener
        self.metrics = metrics
        self.check_s = check_s
        self._lock = threading.Lock()
        self._handles: dict[str, _Handle] = {}
        self._next_check: dict[str, float] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._closed = False

    def search(self, name: str, query: str, k: int, flt: Filter) -> list[Hit]:
        """The top `k` chunks of knowledge base `name` that `flt` admits; timed in /metrics."""
        started = time.perf_counter()
        try:
            with self._lease(name) as handle:
                try:
                    return list(handle.index.search(query, k, flt))
                except Exception as exc:  # a rebuild may have dropped what this handle reads: reopen once, retry
                    if time.monotonic() - handle.opened < self.check_s:
                        raise KnowledgeUnavailable(f"knowledge base '{name}' cannot be searched: {exc}") from None
                    log.warning("knowledge base %s: search failed on the open index; reopening", name, exc_info=True)
                    self._swap(name, handle)
            with self._lease(name) as fresh:
                try:
                    return list(fresh.index.search(query, k, flt))
                except Exception as exc:
                    raise KnowledgeUnavailable(f"knowledge base '{name}' cannot be searched: {exc}") from None
        finally:
            self.metrics.retrieval_latency.labels(name).observe(time.perf_counter() - started)

    def preload(self, name: str) -> None:
        """Open knowledge base `name` now (start-up), so the first request does not wait for it."""
        with self._lease(name):
            pass

    def content_version(self, name: str) -> str:
        with self._lease(name) as handle:
            return handle.version[0]

    @contextmanager
    def _lease(self, name: str) -> Iterator[_Handle]:
        handle = self._current(name)
        try:
            yield handle
        finally:
            with self._lock:
                handle.users -= 1
                done = handle.retired and handle.users == 0
            if done:
                handle.index.close()

    def _current(self, name: str) -> _Handle:
        """The handle to use now (its lease taken); opens the first one, and starts a check when one is due."""
        with self._lock:
            handle = self._handles.get(name)
            due = time.monotonic() >= self._next_check.get(name, 0.0)
            if handle is not None:
                handle.users += 1
                if due:
                    self._next_check[name] = time.monotonic() + self.check_s
                    threading.Thread(target=self._check, args=(name, handle), daemon=True).start()
                return handle
        self._swap(name, None)
        return self._current(name)

    def _check(self, name: str, handle: _Handle) -> None:
        """Swap in a new handle when the store's metadata moved on from the one `handle` was opened at."""
        try:
            current = _version(handle.index.store.meta())
        except Exception:
            log.warning("knowledge base %s: reading its metadata failed; reopening", name, exc_info=True)
            current = ("?", "?")
        if current != handle.version:
            try:
                self._swap(name, handle)
            except KnowledgeUnavailable as exc:  # keep serving the old index; the next check tries again
                log.warning("%s", exc)

    def _swap(self, name: str, stale: _Handle | None) -> None:
        """Open knowledge base `name` and make it current, unless another thread already replaced `stale`."""
        with self._lock:
            gate = self._opening.setdefault(name, threading.Lock())
        with gate:
            with self._lock:
                if self._handles.get(name) is not stale:
                    return  # someone else swapped while this thread waited
            try:
                index = self._open(name)
            except Exception as exc:  # not built yet, mid-rebuild, server down: the caller answers 503
                if not isinstance(exc, TuneloomError):
                    log.warning("knowledge base %s: opening failed", name, exc_info=True)
                self.metrics.knowledge_reloads.labels(name, "failed").inc()
                raise KnowledgeUnavailable(f"knowledge base '{name}' cannot be opened now: {exc}") from None
            fresh = _Handle(index, _version(index.meta))
            with self._lock:
                old, self._handles[name] = self._handles.get(name), fresh
                self._next_check[name] = time.monotonic() + self.check_s
                close_now = old is not None and old.users == 0
                if old is not None:
                    old.retired = True
            self.metrics.knowledge_reloads.labels(name, "opened" if old is None else "reloaded").inc()
            if old is not None:
                log.info("knowledge base %s: new index %s swapped in", name, fresh.version[0][:12])
            if close_now:
                assert old is not None
                old.index.close()

    def close(self) -> None:
        """Close every open index (server shutdown, after running requests finished)."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.index.close()
