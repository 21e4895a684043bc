"""A knowledge base's chunks on PostgreSQL with pgvector: the server store for teams that outgrow one process.

One table set per knowledge base (`tl_kb_<name>_<hash>_chunks` and `..._meta`), created on first use:
vectors in a pgvector column with an HNSW index (cosine; built by `finish` after a build's writes, then kept
up to date row by row; dropped when a rebuild empties the table), a generated `tsvector` column with a GIN index
for keyword search (ranked with `ts_rank`), access tags as a `text[]` and metadata as `jsonb`, so every
filter runs in SQL before the top-k cut. Several servers and build processes can share one database.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Column,
    Computed,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    column,
    create_engine,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSQUERY, TSVECTOR, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement, TextClause

from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Chunk, Filter, IndexMeta
from tuneloom.registry.uris import redact_text, redact_uri

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TS_CONFIG = re.compile(r"^[a-z_]{1,40}$")
_UPSERT_BATCH = 1000
_NOT_SET = ("chunk_id", "tsv")  # the key, and the generated column
_HNSW = {"m": 16, "ef_construction": 64}  # pgvector's defaults, written down so the index is reproducible


def engine_url(url: str) -> str:
    """`url` with the psycopg 3 driver named: SQLAlchemy reads a bare postgresql:// as psycopg2, not installed here."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def table_prefix(knowledge_base: str) -> str:
    """A safe, unique SQL identifier stem for a knowledge base name (PostgreSQL folds case and caps names at 63 bytes)."""
    if not _NAME.match(knowledge_base):
        raise TuneloomError(
            f"knowledge base name {knowledge_base!r} cannot name a table: use letters, digits, '_', '-' or '.' "
            "(up to 100 characters, starting with a letter or digit)"
        )
    stem = re.sub(r"[^a-z0-9_]", "_", knowledge_base.lower())[:32]
    digest = hashlib.sha256(knowledge_base.encode()).hexdigest()[:8]  # 'A-b' and 'a_b' get different tables
    return f"tl_kb_{stem}_{digest}"


class PgVectorStore:
    """VectorStore on PostgreSQL + pgvector; safe to share between threads (one connection per call)."""

    def __init__(self, url: str, knowledge_base: str, *, text_search_config: str = "english") -> None:
        if not _TS_CONFIG.match(text_search_config):
            raise TuneloomError(
                f"text_search_config {text_search_config!r}: use a PostgreSQL configuration name such as 'english'"
            )
        self.display_url = redact_uri(url)
        self.knowledge_base = knowledge_base
        self.prefix = table_prefix(knowledge_base)
        self.ts_config = text_search_config
        try:
            self.engine: Engine = create_engine(engine_url(url), pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise TuneloomError(f"knowledge store {self.display_url}: {redact_text(str(exc))}") from None
        self._meta_table = Table(
            f"{self.prefix}_meta",
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("meta", JSONB, nullable=False),
        )
        self._chunks: Table | None = None
        with self._begin() as conn:
            _require_pgvector(conn, self.display_url)
            self._meta_table.create(conn, checkfirst=True)

    # -- tables

    def _table(self) -> Table | None:
        """The chunk table, or None while nothing was indexed (another process may have created it since)."""
        if self._chunks is None:
            with self._begin() as conn:
                dim = _vector_dim(conn, f"{self.prefix}_chunks")
            if dim is not None:
                self._chunks = self._chunk_table(dim)
        return self._chunks

    def _chunk_table(self, dim: int) -> Table:
        table = Table(
            f"{self.prefix}_chunks",
            MetaData(),
            Column("chunk_id", String, primary_key=True),
            Column("doc_id", String, nullable=False, index=True),
            Column("doc_hash", String, nullable=False),
            Column("section", JSONB, nullable=False),
            Column("position", Integer, nullable=False),
            Column("text", Text, nullable=False),
            Column("tokens", Integer, nullable=False),
            Column("tags", ARRAY(String), nullable=False),
            Column("metadata", JSONB, nullable=False),
            Column("embedding", Vector(dim), nullable=False),
            Column("tsv", TSVECTOR, Computed(f"to_tsvector('{self.ts_config}'::regconfig, text)", persisted=True)),
        )
        short = self.prefix.removeprefix("tl_kb_")
        Index(f"{short}_tsv", table.c.tsv, postgresql_using="gin")
        Index(f"{short}_tags", table.c.tags, postgresql_using="gin")
        Index(f"{short}_meta", table.c.metadata, postgresql_using="gin")
        return table

    def _hnsw_ddl(self, table: Table, create: bool) -> TextClause:
        """CREATE or DROP of the vector index. Kept off the table's metadata so that creating the table does not
        build it: `finish` builds it in bulk, far faster than pgvector inserting every row into the graph."""
        quote = self.engine.dialect.identifier_preparer.quote
        name = quote(f"{self.prefix.removeprefix('tl_kb_')}_hnsw")
        if not create:
            return text(f"DROP INDEX IF EXISTS {name}")
        options = ", ".join(f"{key} = {value}" for key, value in _HNSW.items())
        return text(
            f"CREATE INDEX IF NOT EXISTS {name} ON {quote(table.name)} USING hnsw (embedding vector_cosine_ops) WITH ({options})"
        )

    def _ensure_chunks(self, conn: Connection, dim: int) -> Table:
        """The chunk table with vectors of `dim`; an empty table of another width is re-created, a full one refused."""
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(self.prefix))))  # one creator at a time
        existing = _vector_dim(conn, f"{self.prefix}_chunks")
        if existing is not None and existing != dim:
            table = self._chunk_table(existing)
            held = conn.execute(select(func.count()).select_from(table)).scalar_one()
            if held:
                raise TuneloomError(
                    f"knowledge base {self.knowledge_base!r} on {self.display_url} holds {held} chunks with "
                    f"{existing}-dimensional vectors, not {dim}: rebuild the index (delete its documents first)"
                )
            table.drop(conn)
        self._chunks = self._chunk_table(dim)
        self._chunks.create(conn, checkfirst=True)
        return self._chunks

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; database errors become one readable line naming the server (password removed)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            first = redact_text(str(getattr(exc, "orig", exc))).splitlines()[0]
            raise TuneloomError(f"knowledge store {self.display_url}: {exc.__class__.__name__}: {first}") from None

    # -- VectorStore

    def meta(self) -> IndexMeta | None:
        with self._begin() as conn:
            row = conn.execute(select(self._meta_table.c.meta).where(self._meta_table.c.id == 1)).scalar_one_or_none()
        return None if row is None else IndexMeta.model_validate(row)

    def set_meta(self, meta: IndexMeta) -> None:
        with self._begin() as conn:
            self._ensure_chunks(conn, meta.dim)
            stmt = insert(self._meta_table).values(id=1, meta=meta.model_dump(mode="json"))
            conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"meta": stmt.excluded.meta}))

    def documents(self) -> dict[str, str]:
        if (table := self._table()) is None:
            return {}
        with self._begin() as conn:
            rows = conn.execute(select(table.c.doc_id, table.c.doc_hash).distinct())
            return {doc_id: doc_hash for doc_id, doc_hash in rows}

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors) or vectors.ndim != 2:
            raise ValueError(f"upsert: {len(chunks)} chunks but vectors of shape {vectors.shape}")
        if not chunks:
            return
        with self._begin() as conn:  # one transaction: a failed batch leaves the index as it was
            table = self._ensure_chunks(conn, int(vectors.shape[1]))
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["chunk_id"], set_={c.name: stmt.excluded[c.name] for c in table.c if c.name not in _NOT_SET}
            )
            for start in range(0, len(chunks), _UPSERT_BATCH):
                batch = zip(chunks[start : start + _UPSERT_BATCH], vectors[start : start + _UPSERT_BATCH], strict=True)
                conn.execute(stmt, [_row(chunk, vector) for chunk, vector in batch])  # executemany, batched by SQLAlchemy

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids or (table := self._table()) is None:
            return
        with self._begin() as conn:
            conn.execute(delete(table).where(table.c.doc_id.in_(list(doc_ids))))
            if conn.execute(select(table.c.chunk_id).limit(1)).first() is None:  # emptied: a rebuild follows
                conn.execute(self._hnsw_ddl(table, create=False))

    def dense_search(self, vector: np.ndarray, k: int, flt: Filter) -> list[tuple[Chunk, float]]:
        """Cosine similarity through the HNSW index; exact when the filter leaves the index fewer than k rows.

        pgvector's HNSW scan filters after the graph walk (at most `hnsw.ef_search` candidates), so a selective
        filter can starve it; the exact scan over the admitted rows then gives the true top k.
        """
        if k <= 0 or (table := self._table()) is None:
            return []
        distance = table.c.embedding.cosine_distance(np.asarray(vector, dtype=np.float32).ravel())
        query = select(table, distance.label("distance")).where(*self._where(table, flt)).order_by(distance).limit(k)
        with self._begin() as conn:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * k))}"))
            rows = conn.execute(query).mappings().all()
            if len(rows) < k:
                conn.execute(text("SET LOCAL enable_indexscan = off"))  # bitmap (tags, metadata) or sequential: exact
                conn.execute(text("SET LOCAL enable_seqscan = on"))
                rows = conn.execute(query).mappings().all()
        return [(_chunk(row), 1.0 - float(row["distance"])) for row in rows]

    def keyword_search(self, text_query: str, k: int, flt: Filter) -> list[tuple[Chunk, float]]:
        """Full-text search: any of the query's words (stemmed, stop words dropped), ranked by `ts_rank`
        normalised by document length; chunks sharing no word with the query are not returned."""
        if k <= 0 or (table := self._table()) is None:
            return []
        tsquery = _any_word_query(self.ts_config, text_query)
        rank = func.ts_rank(table.c.tsv, tsquery, 1).label("rank")
        query = (
            select(table, rank)
            .where(table.c.tsv.op("@@")(tsquery), *self._where(table, flt))
            .order_by(rank.desc(), table.c.chunk_id)
            .limit(k)
        )
        with self._begin() as conn:
            rows = conn.execute(query).mappings().all()
        return [(_chunk(row), float(row["rank"])) for row in rows]

    def finish(self) -> None:
        """After a build or update: the HNSW index built in bulk where missing, and fresh planner statistics."""
        if (table := self._table()) is None:
            return
        with self._begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(self.prefix))))
            conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))  # the graph of 100k x 384 fits in memory
            conn.execute(self._hnsw_ddl(table, create=True))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"ANALYZE {self.engine.dialect.identifier_preparer.quote(table.name)}"))

    def count(self) -> int:
        if (table := self._table()) is None:
            return 0
        with self._begin() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def chunks(self) -> Iterator[Chunk]:
        """Every stored chunk (without its vector), streamed from a server-side cursor in batches."""
        if (table := self._table()) is None:
            return
        columns = [c for c in table.c if c.name not in ("embedding", "tsv")]
        with self._begin() as conn:
            yield from (_chunk(row) for row in conn.execution_options(yield_per=2000).execute(select(*columns)).mappings())

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Remove this knowledge base's tables (its chunks and meta) from the database."""
        with self._begin() as conn:
            if (table := self._table()) is not None:
                table.drop(conn, checkfirst=True)
            self._meta_table.drop(conn, checkfirst=True)
        self._chunks = None

    @staticmethod
    def _where(table: Table, flt: Filter) -> list[ColumnElement[bool]]:
        """The filter as SQL: untagged chunks or a shared tag, and metadata containing every `where` pair."""
        clauses: list[ColumnElement[bool]] = []
        if flt.allowed_tags is not None:
            allowed = bindparam("allowed_tags", sorted(flt.allowed_tags), type_=ARRAY(String))
            clauses.append(or_(func.cardinality(table.c.tags) == 0, table.c.tags.overlap(allowed)))
        if flt.where:
            clauses.append(table.c.metadata.contains(dict(flt.where)))
        return clauses


def _any_word_query(ts_config: str, query: str) -> Any:
    """A tsquery matching any lexeme of `query`: BM25-style OR semantics rather than `plainto_tsquery`'s AND.

    The lexemes come from the same configuration as the indexed text and are quoted, so punctuation in the
    query cannot change the tsquery's syntax; a query of stop words only yields NULL and matches nothing.
    """
    lexeme = column("lexeme", Text)
    quoted = func.concat("'", func.replace(func.replace(lexeme, "\\", "\\\\"), "'", "''"), "'")
    words = func.unnest(func.to_tsvector(literal_column(f"'{ts_config}'::regconfig"), query)).alias("words")
    lexemes = select(func.string_agg(quoted, " | ")).select_from(words).scalar_subquery()
    return lexemes.cast(TSQUERY)


def _row(chunk: Chunk, vector: np.ndarray) -> dict[str, Any]:
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "doc_hash": chunk.doc_hash,
        "section": list(chunk.section),
        "position": chunk.position,
        "text": chunk.text.replace("\x00", ""),  # PostgreSQL text cannot hold NUL
        "tokens": chunk.tokens,
        "tags": list(chunk.tags),
        "metadata": dict(chunk.metadata),
        "embedding": np.asarray(vector, dtype=np.float32),
    }


def _chunk(row: Any) -> Chunk:
    return Chunk(
        chunk_id=row["chunk_id"],
        doc_id=row["doc_id"],
        doc_hash=row["doc_hash"],
        section=row["section"],
        position=row["position"],
        text=row["text"],
        tokens=row["tokens"],
        tags=row["tags"],
        metadata=row["metadata"],
    )


def _vector_dim(conn: Connection, table: str) -> int | None:
    """The width of `table`'s embedding column, or None when the table does not exist yet."""
    row = conn.execute(
        text("SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attname = 'embedding'"),
        {"t": table},
    ).scalar_one_or_none()
    return None if row is None else int(row)


def _require_pgvector(conn: Connection, display_url: str) -> None:
    available = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar_one_or_none()
    if available is None:
        raise TuneloomError(
            f"knowledge store {display_url}: this PostgreSQL server has no pgvector extension: install "
            "pgvector on the server, or use the embedded store (`store: {kind: lancedb}`)"
        )
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
