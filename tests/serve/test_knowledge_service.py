"""The server's knowledge-base handles: swapped on a new build, the old one closed only after its last
request, kept when the new one cannot be opened, and a failing search retried once on a fresh handle.

The index here is a small stand-in whose search can be held open, to control the timing; the real index
under a live server is covered by test_knowledge.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Chunk, Filter, Hit, IndexMeta
from tuneloom.serve.knowledge import KnowledgeService, KnowledgeUnavailable
from tuneloom.serve.metrics import ServeMetrics


class Shelf:
    """What is 'built' now: its version, whether opening fails, whether searching fails."""

    def __init__(self) -> None:
        self.version = "v1"
        self.open_error: Exception | None = None
        self.opened: list[Index] = []


def meta(version: str) -> IndexMeta:
    return IndexMeta(knowledge_base="kb", embedder="e", embedder_hash="h", dim=2, content_version=version)


class Built:
    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf

    def meta(self) -> IndexMeta:
        return meta(self.shelf.version)


class Index:
    def __init__(self, shelf: Shelf) -> None:
        self.shelf, self.version = shelf, shelf.version
        self.meta = meta(self.version)
        self.store = Built(shelf)  # the service reads `index.store.meta()`: what is built now
        self.closed = False
        self.held: threading.Event | None = None  # set: the next search waits for it
        self.entered = threading.Event()
        self.fail = False

    def search(self, query: str, k: int, flt: Filter) -> list[Hit]:
        assert not self.closed, "searched a closed index"
        held, self.held = self.held, None
        if held is not None:
            self.entered.set()
            held.wait(10)
        if self.fail:
            raise RuntimeError("table dropped")
        chunk = Chunk(chunk_id=self.version, doc_id="d", doc_hash="x", position=0, text=query, tokens=1)
        return [Hit(chunk=chunk, score=1.0)]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def shelf() -> Shelf:
    return Shelf()


@pytest.fixture
def service(shelf: Shelf) -> KnowledgeService:
    def opener(name: str) -> Index:
        if shelf.open_error is not None:
            raise shelf.open_error
        shelf.opened.append(Index(shelf))
        return shelf.opened[-1]

    return KnowledgeService(opener, ServeMetrics(), check_s=0)


def served(service: KnowledgeService) -> str:
    return service.search("kb", "q", 1, Filter())[0].chunk.chunk_id


def reloads(service: KnowledgeService, result: str) -> float:
    value = service.metrics.registry.get_sample_value("tuneloom_knowledge_reloads_total", {"knowledge": "kb", "result": result})
    return value or 0.0


def until(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_new_build_is_swapped_in_and_the_old_index_closes_after_its_last_request(service, shelf):
    assert served(service) == "v1"
    first = shelf.opened[0]
    first.held = release = threading.Event()  # the next search on v1 stays in flight
    result: list[str] = []
    in_flight = threading.Thread(target=lambda: result.append(served(service)))
    in_flight.start()
    assert first.entered.wait(10)
    shelf.version = "v2"
    assert until(lambda: served(service) == "v2")  # a check found the new build and swapped it in
    assert not first.closed  # the request that started on v1 still holds it
    release.set()
    in_flight.join(10)
    assert result == ["v1"] and first.closed and not shelf.opened[-1].closed
    assert len(shelf.opened) == 2 and reloads(service, "reloaded") == 1


def test_a_build_that_cannot_be_opened_leaves_the_old_index_serving(service, shelf):
    assert served(service) == "v1"
    shelf.version, shelf.open_error = "v2", TuneloomError("embedder mismatch")
    for _ in range(5):
        assert served(service) == "v1"
    assert until(lambda: reloads(service, "failed") >= 1)
    shelf.open_error = None
    assert until(lambda: served(service) == "v2")


def test_a_failing_search_is_retried_once_on_a_fresh_index(service, shelf):
    assert served(service) == "v1"
    shelf.opened[0].fail = True
    shelf.version = "v1-rebuilt"
    assert served(service) == "v1-rebuilt"
    assert shelf.opened[0].closed
    shelf.opened[-1].fail = True
    shelf.open_error = ValueError("Table 'chunks' was not found")  # mid-rebuild: nothing to open yet
    with pytest.raises(KnowledgeUnavailable, match="cannot be opened now"):
        served(service)


def test_first_open_failure_is_unavailable_and_close_closes_everything(service, shelf):
    shelf.open_error = TuneloomError("knowledge base 'kb' has no index yet: run `tuneloom index build kb`")
    with pytest.raises(KnowledgeUnavailable, match="no index yet"):
        served(service)
    shelf.open_error = None
    assert served(service) == "v1"
    service.close()
    assert all(index.closed for index in shelf.opened)
