"""The VectorStore contract, run against every store: same inputs, same answers.

A new store joins by one entry in STORES: how to open a store for a knowledge base name (fresh and empty the
first time). After writes the tests call `finish`, as the index writer does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Chunk, Filter, IndexMeta, VectorStore


def _pgvector(request: pytest.FixtureRequest, name: str) -> VectorStore:
    from tuneloom.knowledge.pg_store import PgVectorStore

    return PgVectorStore(request.getfixturevalue("pgvector_url"), name)


def _lancedb(request: pytest.FixtureRequest, name: str) -> VectorStore:
    from tuneloom.knowledge.lance_store import LanceStore

    return LanceStore(request.getfixturevalue("tmp_path") / name)


STORES: dict[str, Callable[[pytest.FixtureRequest, str], VectorStore]] = {
    "lancedb": _lancedb,
    "pgvector": _pgvector,
}

DIM = 8


class Maker:
    """Opens stores of one kind (the same name reopens the same knowledge base) and settles them after writes."""

    def __init__(self, request: pytest.FixtureRequest, open_store: Callable[[pytest.FixtureRequest, str], VectorStore]) -> None:
        self.request, self.open_store = request, open_store
        self.default = f"contract-{uuid.uuid4().hex[:8]}"
        self.opened: list[VectorStore] = []

    def __call__(self, name: str | None = None) -> VectorStore:
        store = self.open_store(self.request, name or self.default)
        self.opened.append(store)
        return store

    def written(self, store: VectorStore) -> VectorStore:
        store.finish()  # what the index writer does after its writes
        return store


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest) -> Iterator[Maker]:
    maker = Maker(request, STORES[request.param])
    yield maker
    for store in maker.opened:
        store.close()


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def chunk(doc: str, position: int, text: str, *, tags: tuple[str, ...] = (), **metadata: str) -> Chunk:
    return Chunk(
        chunk_id=f"{doc}#{position}",
        doc_id=doc,
        doc_hash=f"hash-{doc}",
        section=["Handbook", doc],
        position=position,
        text=text,
        tokens=len(text.split()),
        tags=list(tags),
        metadata=dict(metadata),
    )


CORPUS = [
    (chunk("refunds.md", 0, "Refunds are issued within 14 days of a return.", lang="en"), unit(1, 0)),
    (chunk("refunds.md", 1, "A refund needs the original receipt.", lang="en"), unit(0.9, 0.1)),
    (chunk("vacation.md", 0, "Employees get 25 vacation days per year.", tags=("hr",), lang="en"), unit(0, 1)),
    (chunk("salaries.md", 0, "Salary bands are reviewed every April.", tags=("hr", "finance"), lang="de"), unit(0, 0, 1)),
    (chunk("büro.md", 0, "Das Büro öffnet um 8 Uhr — café au lait im Erdgeschoss.", lang="de"), unit(0, 0, 0, 1)),
]


def filled(make: Maker, name: str | None = None) -> VectorStore:
    store = make(name)
    store.upsert([c for c, _ in CORPUS], np.stack([v for _, v in CORPUS]))
    return make.written(store)


def ids(results: list[tuple[Chunk, float]]) -> list[str]:
    return [c.chunk_id for c, _ in results]


def test_empty_store(make_store):
    store = make_store(None)
    assert store.meta() is None
    assert store.count() == 0
    assert store.documents() == {}
    assert store.dense_search(unit(1), 3, Filter()) == []
    assert store.keyword_search("refund", 3, Filter()) == []


def test_meta_round_trip_and_reopen(make_store):
    store = make_store(None)
    meta = IndexMeta(knowledge_base="handbook", embedder="all-minilm-l6-v2", embedder_hash="abc", dim=DIM, content_version="v1")
    store.set_meta(meta)
    assert store.meta() == meta
    store.set_meta(meta.model_copy(update={"content_version": "v2"}))
    assert make_store(None).meta().content_version == "v2"  # another handle on the same knowledge base


def test_upsert_round_trips_every_field_and_replaces_by_id(make_store):
    store = filled(make_store)
    assert store.count() == len(CORPUS)
    assert store.documents() == {"refunds.md": "hash-refunds.md", "vacation.md": "hash-vacation.md",
                                 "salaries.md": "hash-salaries.md", "büro.md": "hash-büro.md"}  # fmt: skip
    got = {c.chunk_id: c for c, _ in store.dense_search(unit(0, 0, 0, 1), 5, Filter())}
    assert got["büro.md#0"] == CORPUS[4][0]
    assert got["salaries.md#0"] == CORPUS[3][0]

    changed = CORPUS[0][0].model_copy(update={"text": "Refunds take 30 days now.", "doc_hash": "hash-2"})
    store.upsert([changed], unit(1, 0)[None, :])
    make_store.written(store)
    assert store.count() == len(CORPUS)
    top, score = store.dense_search(unit(1, 0), 1, Filter())[0]
    assert top == changed and score == pytest.approx(1.0, abs=1e-5)
    assert make_store(None).count() == len(CORPUS)  # committed, visible to another handle


def test_chunks_lists_every_stored_chunk(make_store):
    assert list(make_store(None).chunks()) == []
    store = filled(make_store)
    assert sorted(store.chunks(), key=lambda c: c.chunk_id) == sorted((c for c, _ in CORPUS), key=lambda c: c.chunk_id)


def test_dense_search_orders_by_cosine_similarity(make_store):
    store = filled(make_store)
    results = store.dense_search(unit(1, 0.05), 3, Filter())
    assert ids(results)[:2] == ["refunds.md#0", "refunds.md#1"]
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(unit(1, 0.05) @ unit(1, 0)), abs=1e-4)
    assert len(store.dense_search(unit(1), 100, Filter())) == len(CORPUS)


def test_keyword_search_stems_and_matches_any_word(make_store):
    store = filled(make_store)
    assert set(ids(store.keyword_search("refund", 5, Filter()))) == {"refunds.md#0", "refunds.md#1"}
    either = ids(store.keyword_search("Any vacation left? And what about salaries?", 5, Filter()))
    assert set(either) == {"vacation.md#0", "salaries.md#0"}
    assert store.keyword_search("spaceship", 5, Filter()) == []
    assert store.keyword_search("", 5, Filter()) == []
    assert store.keyword_search("the and of", 5, Filter()) == []  # stop words only
    odd = "it's a 'refund' & | ! :* (receipt) \\ \" <-> "  # tsquery syntax characters are words, not operators
    assert set(ids(store.keyword_search(odd, 5, Filter()))) == {"refunds.md#0", "refunds.md#1"}
    scores = [s for _, s in store.keyword_search("refund receipt", 5, Filter())]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_access_tags_and_metadata_filter_in_both_searches(make_store):
    store = filled(make_store)
    hr_query = unit(0, 1)
    for search, query in ((store.dense_search, hr_query), (store.keyword_search, "vacation salary days refunds")):
        everything = set(ids(search(query, 10, Filter())))
        public = set(ids(search(query, 10, Filter(allowed_tags=frozenset()))))
        assert "vacation.md#0" in everything and not public & {"vacation.md#0", "salaries.md#0"}
        finance = set(ids(search(query, 10, Filter(allowed_tags=frozenset({"finance"})))))
        assert "salaries.md#0" in finance and "vacation.md#0" not in finance
        german = set(ids(search(query, 10, Filter(where={"lang": "de"}))))
        assert german <= {"salaries.md#0", "büro.md#0"}
        assert search(query, 10, Filter(where={"lang": "fr"})) == []
    for hit, _ in store.dense_search(hr_query, 10, Filter(allowed_tags=frozenset({"finance"}))):
        assert Filter(allowed_tags=frozenset({"finance"})).admits(hit)


def test_filter_applies_before_the_top_k_cut(make_store):
    """Many closer chunks the caller may not see must not crowd out the one it may see."""
    store = make_store(None)
    rng = np.random.default_rng(0)
    near = unit(1) + rng.normal(0, 0.01, size=(300, DIM)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    hidden = [chunk(f"secret-{i}.md", 0, f"secret refund memo {i}", tags=("board",)) for i in range(300)]
    visible = chunk("public.md", 0, "public refund notice")
    store.upsert([*hidden, visible], np.vstack([near, unit(0, 1)[None, :]]))
    make_store.written(store)
    public = Filter(allowed_tags=frozenset({"staff"}))
    assert ids(store.dense_search(unit(1), 1, public)) == ["public.md#0"]
    assert ids(store.keyword_search("refund", 1, public)) == ["public.md#0"]
    assert len(store.dense_search(unit(1), 5, Filter(allowed_tags=frozenset({"board"})))) == 5


def test_delete_documents_removes_every_chunk_of_them(make_store):
    store = filled(make_store)
    store.delete_documents(["refunds.md", "not-indexed.md"])
    make_store.written(store)
    assert store.count() == len(CORPUS) - 2
    assert "refunds.md" not in store.documents()
    assert not {"refunds.md#0", "refunds.md#1"} & set(ids(store.dense_search(unit(1), 10, Filter())))
    assert store.keyword_search("refund", 5, Filter()) == []
    store.delete_documents([])
    assert store.count() == len(CORPUS) - 2


def test_knowledge_bases_are_isolated(make_store):
    a = filled(make_store)
    b = make_store(f"other-{uuid.uuid4().hex[:6]}")
    assert b.count() == 0 and b.documents() == {}
    b.upsert([CORPUS[0][0]], CORPUS[0][1][None, :])
    a.delete_documents(["refunds.md"])
    make_store.written(a), make_store.written(b)
    assert b.count() == 1 and a.count() == len(CORPUS) - 2


def test_upsert_rejects_mismatched_vectors(make_store):
    store = make_store(None)
    with pytest.raises((ValueError, TuneloomError), match="2 chunks"):
        store.upsert([CORPUS[0][0], CORPUS[1][0]], unit(1)[None, :])
    assert store.count() == 0
