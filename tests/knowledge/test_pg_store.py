"""PostgreSQL + pgvector specifics: names, the HNSW index and its filtered fallback, widths, server errors."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from sqlalchemy import event, text

from tests.knowledge.test_store_contract import chunk, unit
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.pg_store import PgVectorStore, engine_url, table_prefix
from tuneloom.knowledge.records import Filter, IndexMeta


@pytest.fixture
def store(pgvector_url):
    made = PgVectorStore(pgvector_url, f"pg-{uuid.uuid4().hex[:8]}")
    yield made
    made.drop()
    made.close()


def test_table_names_are_safe_and_distinct():
    assert table_prefix("Support-KB") != table_prefix("support_kb")
    assert len(f"{table_prefix('x' * 100)}_chunks") <= 63
    assert table_prefix("a.b").startswith("tl_kb_a_b_")
    for bad in ('x"; DROP TABLE users; --', "", "../etc", "a b", "é"):
        with pytest.raises(TuneloomError, match="cannot name a table"):
            table_prefix(bad)
    assert engine_url("postgresql://u:p@h/db").startswith("postgresql+psycopg://")
    assert engine_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


def test_hnsw_index_is_used_and_close_to_exact(store):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert([chunk(f"d{i}.md", 0, f"text {i}") for i in range(1000)], vectors)
    assert not has_hnsw(store)  # built in bulk by finish, not row by row
    store.finish()
    assert has_hnsw(store)
    queries = rng.normal(size=(20, 32)).astype(np.float32)
    recall = []
    for query in queries:
        exact = {f"d{i}.md#0" for i in np.argsort(-(vectors @ query))[:10]}
        found = {c.chunk_id for c, _ in store.dense_search(query, 10, Filter())}
        recall.append(len(exact & found) / 10)
    assert np.mean(recall) >= 0.95
    with store.engine.connect() as conn:
        plan = conn.execute(
            text(f"EXPLAIN SELECT chunk_id FROM {store.prefix}_chunks ORDER BY embedding <=> :v LIMIT 10"),
            {"v": str(queries[0].tolist())},
        ).scalars()
        assert "hnsw" in " ".join(plan)


def test_a_handle_opened_before_the_first_write_sees_it(store):
    """Several servers and build processes share one database: no handle caches the table's absence."""
    reader = PgVectorStore(store.engine.url.render_as_string(hide_password=False), store.knowledge_base)
    assert reader.count() == 0
    store.upsert([chunk("a.md", 0, "the refund policy")], unit(1)[None, :])
    assert reader.count() == 1 and [c.chunk_id for c, _ in reader.keyword_search("refunds", 5, Filter())] == ["a.md#0"]
    reader.close()


def test_selective_filter_falls_back_to_an_exact_scan(store):
    """With the index forced, the HNSW walk sees only hidden chunks; the fallback still finds the visible one."""
    event.listen(store.engine, "connect", lambda conn, _: conn.execute("SET enable_seqscan = off"))
    store.engine.dispose()
    near = np.tile(unit(1), (200, 1)) + np.random.default_rng(0).normal(0, 0.01, size=(200, 8)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    hidden = [chunk(f"s{i}.md", 0, f"memo {i}", tags=("board",)) for i in range(200)]
    store.upsert([*hidden, chunk("public.md", 0, "notice")], np.vstack([near, unit(0, 1)[None, :]]))
    store.finish()
    assert [c.chunk_id for c, _ in store.dense_search(unit(1), 2, Filter(allowed_tags=frozenset()))] == ["public.md#0"]


def has_hnsw(store: PgVectorStore) -> bool:
    with store.engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%USING hnsw%'"),
            {"t": f"{store.prefix}_chunks"},
        )
        return found.first() is not None


def test_emptying_the_table_drops_the_vector_index_for_a_bulk_rebuild(store):
    store.upsert([chunk("a.md", 0, "alpha"), chunk("b.md", 0, "beta")], np.stack([unit(1), unit(0, 1)]))
    store.finish()
    store.delete_documents(["a.md"])
    assert has_hnsw(store)  # an update keeps it, new rows join it one by one
    store.delete_documents(["b.md"])
    assert not has_hnsw(store)
    store.upsert([chunk("c.md", 0, "gamma")], unit(1)[None, :])
    store.finish()
    assert has_hnsw(store) and [c.chunk_id for c, _ in store.dense_search(unit(1), 1, Filter())] == ["c.md#0"]


def test_vector_width_is_checked(store):
    store.upsert([chunk("a.md", 0, "alpha")], unit(1)[None, :])
    with pytest.raises(TuneloomError, match="8-dimensional vectors, not 4"):
        store.upsert([chunk("b.md", 0, "beta")], np.ones((1, 4), dtype=np.float32) / 2)
    with pytest.raises(TuneloomError, match="rebuild the index"):
        store.set_meta(IndexMeta(knowledge_base="kb", embedder="e", embedder_hash="h", dim=4))
    assert store.count() == 1  # the refused writes changed nothing
    store.delete_documents(["a.md"])
    store.set_meta(IndexMeta(knowledge_base="kb", embedder="e2", embedder_hash="h2", dim=4))  # empty: re-created
    store.upsert([chunk("b.md", 0, "beta")], np.ones((1, 4), dtype=np.float32) / 2)
    assert PgVectorStore(store.engine.url.render_as_string(hide_password=False), store.knowledge_base).count() == 1


def test_unreachable_server_is_one_clear_line_without_the_password():
    with pytest.raises(TuneloomError) as caught:
        PgVectorStore("postgresql://alice:s3cret@127.0.0.1:1/kb?connect_timeout=2", "handbook")
    message = str(caught.value)
    assert "knowledge store postgresql://127.0.0.1:1/kb" in message and "s3cret" not in message
    assert "\n" not in message


@pytest.mark.skipif(
    not os.environ.get("TUNELOOM_TEST_POSTGRES_URL"),
    reason="TUNELOOM_TEST_POSTGRES_URL is not set (CI's .ci/run starts Debian's PostgreSQL, which has no pgvector)",
)
def test_server_without_pgvector_is_refused_with_the_fix():
    with pytest.raises(TuneloomError, match="no pgvector extension: install pgvector on the server"):
        PgVectorStore(os.environ["TUNELOOM_TEST_POSTGRES_URL"], "handbook")


@pytest.mark.slow  # loads the packaged MiniLM for the build, the search and the update
def test_knowledge_base_on_the_server_store(tmp_path, pgvector_url):
    """The knowledge-base API end to end on pgvector: build, hybrid search with tags, incremental update."""
    from tests.knowledge.helpers import kb_project
    from tuneloom.knowledge import build_index, open_index, update_index

    name = f"handbook-{uuid.uuid4().hex[:6]}"
    project = kb_project(tmp_path, store={"kind": "pgvector", "url": pgvector_url})
    config = project.config.model_copy(update={"knowledge": [project.config.knowledge[0].model_copy(update={"name": name})]})
    project = project.model_copy(update={"config": config})
    docs = tmp_path / "docs"
    (docs / "hr").mkdir()
    (docs / "returns.md").write_text("# Returns\n\nItems can be returned within 30 days of delivery.\n")
    (docs / "hr" / "salary.md").write_text("# Salary\n\nSalary reviews happen every April.\n")
    stats = build_index(project, name, progress=False)
    assert (stats.documents, stats.chunks) == (2, 2)

    index = open_index(project, name)
    assert index.search("When are salaries reviewed?", k=1)[0].chunk.doc_id.endswith("hr/salary.md")
    public = index.search("When are salaries reviewed?", k=5, flt=Filter(allowed_tags=frozenset()))
    assert [h.chunk.doc_id for h in public] == ["docs/returns.md"]
    index.close()

    (docs / "hr" / "salary.md").unlink()
    (docs / "travel.md").write_text("# Travel\n\nBook trains for trips under four hours.\n")
    stats = update_index(project, name, progress=False)
    assert (stats.added, stats.removed, stats.unchanged) == (1, 1, 1)
    store = PgVectorStore(pgvector_url, name)
    assert set(store.documents()) == {"docs/returns.md", "docs/travel.md"}
    assert store.meta().content_version == stats.content_version
    store.drop()
    store.close()
