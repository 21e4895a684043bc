"""The embedded store: one LanceDB table in the workspace (vectors, native full-text BM25 index, filters, deletes).

LanceDB's own full-text index (not tantivy) is used: it is built in, applies SQL filters before ranking
(`prefilter`), and follows deletes; exact vector search below `ann_threshold` chunks, IVF-PQ above it.
A rebuild writes a new table and switches to it when meta.json (which names the table) is rewritten at the end,
so readers keep searching the previous index meanwhile; the old table is removed after the switch.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneloom.atomic import make_private_dirs, write_json_atomic
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Chunk, Filter, IndexMeta

TABLE = "chunks"
# IVF-PQ search settings, measured with bench/retrieval.py's clustered vectors at 100,000 chunks (24 partitions,
# 100 probe queries, dense top 50 as hybrid search asks): recall@10 against exact search was 0.927 with 8
# partitions probed, 0.990 with 16 and 1.000 with 24 (all); refine factor 10, 20, 40 gave the same recall but
# cost ~12 and ~35 ms more CPU per query (it re-reads limit x factor full vectors). 16 probes with factor 10 clear
# the 0.95 target with a margin at ~23 ms CPU per dense search.
_NPROBES = 16
_REFINE_FACTOR = 10
_COLUMNS = ["chunk_id", "doc_id", "doc_hash", "section", "position", "text", "tokens", "tags", "metadata"]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _where(flt: Filter) -> str | None:
    """The filter as a LanceDB SQL predicate: untagged chunks, or tags the caller holds; exact metadata pairs."""
    parts = []
    if flt.allowed_tags is not None:
        held = ", ".join(_quote(t) for t in sorted(flt.allowed_tags))
        parts.append(f"(array_length(tags) = 0 OR array_has_any(tags, [{held}]))" if held else "array_length(tags) = 0")
    for key, value in sorted(flt.where.items()):
        parts.append(f"array_has(meta_kv, {_quote(f'{key}={value}')})")
    return " AND ".join(parts) or None


def _chunks(data: Any) -> list[Chunk]:
    """Chunks from an Arrow table of `_COLUMNS`, converted column-wise. `model_construct` skips validation:
    every row was a validated `Chunk` when it was written, and re-validating 100 rows costs more than the search."""
    cols = data.select(_COLUMNS).to_pydict()
    return [
        Chunk.model_construct(
            chunk_id=chunk_id,
            doc_id=doc_id,
            doc_hash=doc_hash,
            section=section or [],
            position=position,
            text=text,
            tokens=tokens,
            tags=tags or [],
            metadata=json.loads(metadata or "{}"),
        )
        for chunk_id, doc_id, doc_hash, section, position, text, tokens, tags, metadata in zip(
            *(cols[c] for c in _COLUMNS), strict=True
        )
    ]


class LanceStore:
    """A `VectorStore` in a LanceDB folder; the index metadata sits beside the table in meta.json."""

    def __init__(self, folder: Path, ann_threshold: int = 50_000) -> None:
        import lancedb

        make_private_dirs(folder)
        self.folder = folder
        self.ann_threshold = ann_threshold
        self._db = lancedb.connect(str(folder))
        stored = self.meta()
        self._name = (stored.table if stored else "") or TABLE
        self._table: Any = self._db.open_table(self._name) if self._name in self._tables() else None
        self._dirty = False
        self._approximate = self._table is not None and any(i.index_type != "FTS" for i in self._table.list_indices())

    def meta(self) -> IndexMeta | None:
        path = self.folder / "meta.json"
        return IndexMeta.model_validate_json(path.read_text()) if path.is_file() else None

    def set_meta(self, meta: IndexMeta) -> None:
        """Write the metadata naming this store's table (the switch after a rebuild), then remove other tables:
        the one a rebuild replaced, and any left by a rebuild that was interrupted."""
        named = meta.model_copy(update={"table": "" if self._name == TABLE else self._name})  # "": the default table
        write_json_atomic(self.folder / "meta.json", named.model_dump(mode="json"))
        for name in self._tables():
            if name != self._name and (name == TABLE or name.startswith(f"{TABLE}-")):
                self._db.drop_table(name)

    def _tables(self) -> list[str]:
        return list(self._db.list_tables().tables)

    def documents(self) -> dict[str, str]:
        if self._table is None:
            return {}
        data = self._table.search().select(["doc_id", "doc_hash"]).limit(None).to_arrow()
        return dict(zip(data["doc_id"].to_pylist(), data["doc_hash"].to_pylist(), strict=True))

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        data = _arrow(chunks, vectors)
        if self._table is None:
            self._table = self._db.create_table(self._name, data)
        else:
            merge = self._table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all()
            merge.execute(data)
        self._dirty = True

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if self._table is None or not doc_ids:
            return
        for start in range(0, len(doc_ids), 500):
            ids = ", ".join(_quote(d) for d in doc_ids[start : start + 500])
            self._table.delete(f"doc_id IN ({ids})")
        self._dirty = True

    def finish(self) -> None:
        """After writes: create the keyword index (and the vector index once past the threshold), then let
        `optimize` compact the files and bring existing indexes up to date with the new rows."""
        if self._table is None or not self._dirty:
            return
        from lancedb.index import FTS

        kinds = {i.index_type for i in self._table.list_indices()}
        if "FTS" not in kinds:
            self._table.create_index("text", config=FTS(with_position=False))
        rows = self._table.count_rows()
        if rows >= self.ann_threshold and kinds <= {"FTS"}:
            dim = self._table.schema.field("vector").type.list_size
            sub_vectors = next(d for d in range(max(1, dim // 4), 0, -1) if dim % d == 0)  # ~4 dimensions per PQ code
            self._table.create_index(  # LanceDB's sizing advice: ~4,096 rows per partition
                metric="dot", vector_column_name="vector", num_partitions=max(1, rows // 4096), num_sub_vectors=sub_vectors
            )
            self._approximate = True
        self._table.optimize()
        self._dirty = False

    def dense_search(self, vector: np.ndarray, k: int, flt: Filter) -> list[tuple[Chunk, float]]:
        if self._table is None:
            return []
        query = self._table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector").metric("dot")
        if self._approximate:  # IVF-PQ candidates re-ranked by exact dot products (see _NPROBES)
            query = query.nprobes(_NPROBES).refine_factor(_REFINE_FACTOR)
        where = _where(flt)
        if where:
            query = query.where(where, prefilter=True)
        result = query.select([*_COLUMNS, "_distance"]).limit(k).to_arrow()
        scores = 1.0 - result["_distance"].to_numpy()  # LanceDB's "dot" distance is 1 - dot
        return list(zip(_chunks(result), scores.tolist(), strict=True))

    def keyword_search(self, text: str, k: int, flt: Filter) -> list[tuple[Chunk, float]]:
        if self._table is None or not text.strip():
            return []
        query = self._table.search(text, query_type="fts", fts_columns="text")
        where = _where(flt)
        if where:
            query = query.where(where, prefilter=True)
        result = query.select([*_COLUMNS, "_score"]).limit(k).to_arrow()
        return list(zip(_chunks(result), result["_score"].to_pylist(), strict=True))

    def count(self) -> int:
        return 0 if self._table is None else int(self._table.count_rows())

    def chunks(self) -> Iterator[Chunk]:
        """Every stored chunk, in batches (without vectors)."""
        if self._table is None:
            return
        for batch in self._table.search().select(_COLUMNS).limit(None).to_batches(4096):
            yield from _chunks(batch)

    def begin_rebuild(self) -> None:
        """Send the following writes to a new, empty table (the vector size may change); readers keep the current
        table until `set_meta` switches to the new one. With no current table (a first build) the writes go to the
        default one, where a resumed build finds them. A resumed rebuild finishes in the current table (its
        `pending` documents are rewritten in place); the interrupted new table is dropped by `set_meta`."""
        if self._table is None:
            return
        self._name = f"{TABLE}-{uuid.uuid4().hex[:12]}"
        self._table = None
        self._approximate = False
        self._dirty = False

    def close(self) -> None:
        self._table = None


def _arrow(chunks: Sequence[Chunk], vectors: np.ndarray) -> Any:
    import pyarrow as pa

    if vectors.shape[0] != len(chunks):
        raise TuneloomError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors: the store was given mismatched rows")
    dim = int(vectors.shape[1])
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.table(
        {
            "chunk_id": [c.chunk_id for c in chunks],
            "doc_id": [c.doc_id for c in chunks],
            "doc_hash": [c.doc_hash for c in chunks],
            "section": pa.array([list(c.section) for c in chunks], pa.list_(pa.string())),
            "position": pa.array([c.position for c in chunks], pa.int32()),
            "text": [c.text for c in chunks],
            "tokens": pa.array([c.tokens for c in chunks], pa.int32()),
            "tags": pa.array([list(c.tags) for c in chunks], pa.list_(pa.string())),
            "meta_kv": pa.array([[f"{k}={v}" for k, v in c.metadata.items()] for c in chunks], pa.list_(pa.string())),
            "metadata": [json.dumps(c.metadata, ensure_ascii=False) for c in chunks],
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
