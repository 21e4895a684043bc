"""Build, update and open a knowledge base's index (the Python API behind `tuneloom index`).

An update embeds only new and changed documents and deletes removed ones. Before the store is touched,
`index.json` lists the documents about to be rewritten (`pending`); it is rewritten as batches land, so an
interrupted build or update resumes where it stopped instead of leaving a half-written index behind.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tuneloom.artifacts import IndexState, IndexStats, read_index_state, write_index_state
from tuneloom.config import KnowledgeConfig, Project
from tuneloom.errors import ProjectFileError, TuneloomError
from tuneloom.knowledge.embedder import Embedder
from tuneloom.knowledge.lance_store import LanceStore
from tuneloom.knowledge.progress import Bars
from tuneloom.knowledge.records import Chunk, Filter, Hit, IndexMeta, VectorStore
from tuneloom.knowledge.search import Reranker, hybrid_search
from tuneloom.knowledge.sources import Document, DocumentReader
from tuneloom.knowledge.writer import IndexWriter, content_version

log = logging.getLogger("tuneloom.knowledge")


class EmbedderMismatch(TuneloomError):
    """The index was built with another embedder than the one configured now."""


def kb_dir(workspace: Path, name: str) -> Path:
    """Where a knowledge base's index lives: <workspace>/knowledge/<name>/."""
    return workspace / "knowledge" / name


def store_for(kb: KnowledgeConfig, workspace: Path) -> VectorStore:
    """The store `store.kind` names: LanceDB in the workspace, or a server store (imported only when used)."""
    if kb.store.kind == "lancedb":
        return LanceStore(kb_dir(workspace, kb.name) / "lance", kb.store.ann_threshold)
    from tuneloom.knowledge.pg_store import PgVectorStore  # the server driver loads only for server stores

    assert kb.store.url is not None  # StoreConfig requires a URL for server kinds
    return PgVectorStore(kb.store.url, kb.name)


def settings_hash(kb: KnowledgeConfig) -> str:
    """Hash of every setting that shapes the chunks (a change rebuilds the index); not the store or retrieval."""
    shaping = kb.model_dump(mode="json", include={"sources", "text_column", "title_column", "clean", "redact"})
    shaping |= kb.model_dump(mode="json", include={"max_document_mb", "chunking", "access"})
    return hashlib.sha256(repr(sorted(shaping.items())).encode()).hexdigest()


def _embedder(kb: KnowledgeConfig) -> Embedder:
    embedder = Embedder(kb.embedder.model, kb.embedder.batch_size, kb.embedder.bf16)
    if kb.chunking.max_tokens > embedder.window:
        raise ProjectFileError(
            f"knowledge '{kb.name}': chunking.max_tokens ({kb.chunking.max_tokens}) is over the embedder's window "
            f"({embedder.window} tokens); lower chunking.max_tokens"
        )
    return embedder


def _prior(folder: Path) -> IndexState | None:
    return read_index_state(folder) if (folder / "index.json").is_file() else None


def build_index(project: Project, name: str, *, progress: bool = True) -> IndexStats:
    """Index every document of knowledge base `name` from scratch."""
    return _sync(project, name, rebuild=True, progress=progress)


def update_index(project: Project, name: str, *, progress: bool = True, reembed: bool = False) -> IndexStats:
    """Embed new and changed documents, delete removed ones; a rebuild when settings or embedder changed (or `reembed`)."""
    return _sync(project, name, rebuild=reembed, progress=progress)


def _sync(project: Project, name: str, *, rebuild: bool, progress: bool) -> IndexStats:
    kb = project.config.knowledge_base(name)
    folder = kb_dir(project.workspace, name)
    started = time.perf_counter()
    with Bars(progress) as bars:
        embedder = _embedder(kb)
        store = store_for(kb, project.workspace)
        prior = _prior(folder)
        settings = settings_hash(kb)
        stored = store.meta()  # another embedder's vectors may not even have the same size: start over
        rebuild = rebuild or prior is None or (prior.settings_hash, prior.embedder_hash) != (settings, embedder.hash)
        rebuild = rebuild or (stored is not None and stored.embedder_hash != embedder.hash)
        reader = DocumentReader(project, kb)
        docs = list(bars.track(reader.documents(), "scanning documents"))
        indexed = {} if rebuild else store.documents()
        pending = set(prior.pending) if prior and not rebuild else set()
        todo = [d for d in docs if rebuild or d.doc_id in pending or indexed.get(d.doc_id) != d.doc_hash]
        current = {d.doc_id for d in docs}
        removed = sorted((set(indexed) | pending) - current)
        kept = {} if rebuild or prior is None else {d: e for d, e in prior.documents.items() if d in current}
        state = IndexState(
            settings_hash=settings,
            embedder=kb.embedder.model,
            embedder_hash=embedder.hash,
            pending=sorted({d.doc_id for d in todo} | set(removed)),
            documents={d: e for d, e in kept.items() if d not in {t.doc_id for t in todo}},
            stats=IndexStats(knowledge_base=name),
        )
        write_index_state(folder, state)
        writer = IndexWriter(kb, store, embedder, state, folder, bars)
        writer.reset(rebuild, removed)
        writer.write(todo, reader)
        writer.finish(IndexMeta(knowledge_base=name, embedder=kb.embedder.model, embedder_hash=embedder.hash, dim=embedder.dim))
    stats = _stats(state, indexed, todo, removed, docs, reader, time.perf_counter() - started, writer.embedded)
    state.stats = stats
    write_index_state(folder, state)
    store.close()
    return stats


def _stats(
    state: IndexState,
    indexed: dict[str, str],
    todo: list[Document],
    removed: list[str],
    docs: list[Document],
    reader: DocumentReader,
    seconds: float,
    embedded: int,
) -> IndexStats:
    return IndexStats(
        knowledge_base=state.stats.knowledge_base,
        documents=len(state.documents),
        chunks=sum(e.chunks for e in state.documents.values()),
        tokens=sum(e.tokens for e in state.documents.values()),
        added=sum(1 for d in todo if d.doc_id in state.documents and d.doc_id not in indexed),
        changed=sum(1 for d in todo if d.doc_id in state.documents and d.doc_id in indexed),
        removed=sum(1 for d in {*removed, *(t.doc_id for t in todo)} if d in indexed and d not in state.documents),
        unchanged=len(docs) - len(todo),
        embedded_chunks=embedded,
        skipped=reader.skipped,
        warnings=reader.warnings,
        seconds=round(seconds, 3),
        content_version=content_version(state.documents),
    )


def index_stats(project: Project, name: str) -> IndexStats:
    """What the index of knowledge base `name` holds and what its last build or update did."""
    project.config.knowledge_base(name)
    folder = kb_dir(project.workspace, name)
    prior = _prior(folder)
    if prior is None:
        raise TuneloomError(f"knowledge base '{name}' has no index yet: run `tuneloom index build {name}`")
    if prior.pending:
        prior.stats.warnings.append(
            f"{len(prior.pending)} documents were being written when the last build stopped; `tuneloom index update {name}` finishes them"
        )
    return prior.stats


class KnowledgeIndex:
    """An opened knowledge base: hybrid search with access filtering, its chunks, and its embedder."""

    def __init__(self, kb: KnowledgeConfig, store: VectorStore, embedder: Embedder, meta: IndexMeta) -> None:
        self.kb = kb
        self.store = store
        self.embedder = embedder
        self.meta = meta
        self._local = threading.local()  # notes belong to the thread's last search (servers search concurrently)
        self._reranker: Reranker | None = Reranker(kb.retrieval.reranker) if kb.retrieval.reranker else None

    @property
    def notes(self) -> list[str]:
        """What the calling thread's last search had to adapt (e.g. a query cut to the embedder's window)."""
        notes: list[str] = getattr(self._local, "notes", [])
        return notes

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors from the index's embedder, one row per text."""
        return self.embedder.encode(list(texts))

    def _embed_query(self, query: str) -> np.ndarray:
        text, note = self.embedder.fit_query(query)
        if note:
            self.notes.append(note)
            log.info(note)
        return self.embedder.encode_query(text)

    def search(self, query: str, k: int | None = None, flt: Filter = Filter()) -> list[Hit]:
        """The top `k` (default retrieval.top_k) chunks for `query` among those `flt` admits."""
        self._local.notes = []
        if not query.strip():
            return []
        top = k or self.kb.retrieval.top_k
        return hybrid_search(self.store, query, self._embed_query, self.kb.retrieval, top, flt, self._reranker)

    def chunks(self) -> Iterator[Chunk]:
        return self.store.chunks()

    def close(self) -> None:
        self.store.close()


def open_index(project: Project, name: str) -> KnowledgeIndex:
    """Knowledge base `name` ready to search; refused when it was built with another embedder than configured."""
    kb = project.config.knowledge_base(name)
    store = store_for(kb, project.workspace)
    meta = store.meta()
    if meta is None:
        raise TuneloomError(f"knowledge base '{name}' has no index yet: run `tuneloom index build {name}`")
    embedder = _embedder(kb)
    if meta.embedder_hash != embedder.hash:
        raise EmbedderMismatch(
            f"knowledge base '{name}' was indexed with embedder '{meta.embedder}' ({meta.embedder_hash[:12]}), "
            f"but '{kb.embedder.model}' ({embedder.hash[:12]}) is configured: run `tuneloom index build {name}` "
            f"(or `tuneloom index update {name} --reembed`) to index it with the configured embedder"
        )
    return KnowledgeIndex(kb, store, embedder, meta)
