"""Chunk, embed and store documents in batches, recording progress in `index.json` so a stop can resume."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tuneloom.artifacts import IndexedDocument, IndexState, write_index_state
from tuneloom.config import KnowledgeConfig
from tuneloom.knowledge.chunking import chunk_text
from tuneloom.knowledge.embedder import Embedder
from tuneloom.knowledge.lance_store import LanceStore
from tuneloom.knowledge.progress import Bars
from tuneloom.knowledge.records import Chunk, IndexMeta, VectorStore
from tuneloom.knowledge.sources import Document, DocumentReader

BATCH_CHUNKS = 2048  # chunks per encode call: enough for length-sorted batches, little memory (3 MB of vectors)
SAVE_EVERY_S = 15.0  # how often the resume point in index.json is rewritten during a long build


class IndexWriter:
    """Writes one build or update: documents are deleted, chunked, embedded and upserted batch by batch."""

    def __init__(
        self, kb: KnowledgeConfig, store: VectorStore, embedder: Embedder, state: IndexState, folder: Path, bars: Bars
    ) -> None:
        self.kb, self.store, self.embedder, self.state, self.folder, self.bars = kb, store, embedder, state, folder, bars
        self.embedded = 0
        self._empty = False
        self._pending = set(state.pending)
        self._chunks: list[Chunk] = []
        self._docs: list[str] = []
        self._saved = time.monotonic()

    def reset(self, rebuild: bool, removed: list[str]) -> None:
        """A rebuild empties the store (LanceDB writes a new table, switched to at the end); else remove `removed`."""
        if rebuild and isinstance(self.store, LanceStore):
            self.store.begin_rebuild()
        elif rebuild:
            self.store.delete_documents(sorted(self.store.documents()))
        else:
            self.store.delete_documents(removed)
        self._pending -= set(removed)
        self._empty = rebuild  # nothing to delete before each batch

    def write(self, todo: list[Document], reader: DocumentReader) -> None:
        task = self.bars.add("embedding documents", len(todo))
        for doc in todo:
            text = reader.text(doc)
            if text is None:  # skipped now: its old chunks (if any) go
                self._docs.append(doc.doc_id)
            else:
                self._add(doc, text)
            if len(self._chunks) >= BATCH_CHUNKS:
                self._flush()
            self.bars.advance(task)
        self._flush()

    def _add(self, doc: Document, text: str) -> None:
        pieces = chunk_text(text, self.embedder, self.kb.chunking.max_tokens, self.kb.chunking.overlap)
        for position, piece in enumerate(pieces):
            chunk = Chunk(
                chunk_id=f"{doc.doc_id}#{position}",
                doc_id=doc.doc_id,
                doc_hash=doc.doc_hash,
                section=list(piece.section),
                position=position,
                text=piece.text,
                tokens=piece.tokens,
                tags=doc.tags,
                metadata=doc.metadata,
            )
            self._chunks.append(chunk)
        self._docs.append(doc.doc_id)

    def _flush(self) -> None:
        if not self._docs:
            return
        vectors = self.embedder.encode([c.text for c in self._chunks])
        if not self._empty:
            self.store.delete_documents(self._docs)
        self.store.upsert(self._chunks, vectors)
        self.embedded += len(self._chunks)
        for doc_id in self._docs:
            self.state.documents.pop(doc_id, None)
        for chunk in self._chunks:
            entry = self.state.documents.setdefault(chunk.doc_id, IndexedDocument(doc_hash=chunk.doc_hash, chunks=0, tokens=0))
            entry.chunks += 1
            entry.tokens += chunk.tokens
        self._pending -= set(self._docs)
        self._chunks, self._docs = [], []
        if time.monotonic() - self._saved > SAVE_EVERY_S:
            self._save()

    def _save(self) -> None:
        self.state.pending = sorted(self._pending)
        write_index_state(self.folder, self.state)
        self._saved = time.monotonic()

    def finish(self, meta: IndexMeta) -> None:
        """Index maintenance (the store's keyword and vector indexes), the metadata the index is opened with, and an empty resume list."""
        self.store.finish()
        meta.content_version = content_version(self.state.documents)
        self.store.set_meta(meta)
        self._save()


def content_version(documents: dict[str, IndexedDocument]) -> str:
    """Hash over (doc_id, doc_hash) of every indexed document: the knowledge base's version."""
    listing = "\n".join(f"{d}\t{e.doc_hash}" for d, e in sorted(documents.items()))
    return hashlib.sha256(listing.encode()).hexdigest()[:16]
