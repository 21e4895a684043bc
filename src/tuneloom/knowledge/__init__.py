"""Knowledge bases: a company's documents chunked, embedded and searched (dense + keyword), with access tags.

The Python API: `build_index`, `update_index`, `open_index` (a `KnowledgeIndex` to `search`), `index_stats`
and `store_for`. Importing this package loads neither torch nor sentence-transformers; building or opening does.
"""

from tuneloom.artifacts import IndexStats, SkippedDocument
from tuneloom.knowledge.index import (
    EmbedderMismatch,
    KnowledgeIndex,
    build_index,
    index_stats,
    kb_dir,
    open_index,
    store_for,
    update_index,
)
from tuneloom.knowledge.records import Chunk, Filter, Hit, IndexMeta, VectorStore

__all__ = [
    "Chunk",
    "EmbedderMismatch",
    "Filter",
    "Hit",
    "IndexMeta",
    "IndexStats",
    "KnowledgeIndex",
    "SkippedDocument",
    "VectorStore",
    "build_index",
    "index_stats",
    "kb_dir",
    "open_index",
    "store_for",
    "update_index",
]
