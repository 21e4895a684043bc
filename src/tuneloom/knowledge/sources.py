"""A knowledge base's documents: files (Markdown, text, PDF, DOCX, HTML) and table rows, found through data
preparation's readers, hashed cheaply first and read (cleaned, redacted) only when they must be embedded.

Anything unusable becomes a `Skipped` with the reason (empty, too large, no text layer, unreadable, duplicate).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloom.artifacts import SkippedDocument as Skipped
from tuneloom.config import KnowledgeConfig, Project, SourceConfig
from tuneloom.data.clean import Cleaner
from tuneloom.data.ingest import DOCUMENT_FORMATS, SourceInfo, detect_format, read_file, source_files
from tuneloom.data.redact import Redactor, redactor_for
from tuneloom.errors import DataError


@dataclass
class Document:
    """One document to index: its id, content hash, tags, metadata and a loader for its raw text."""

    doc_id: str
    doc_hash: str
    tags: list[str]
    metadata: dict[str, str]
    load: Callable[[], str] = field(repr=False)
    fmt: str = "text"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    return sorted({str(t).strip() for t in items if str(t).strip()})


class DocumentReader:
    """Walks a knowledge base's sources; `documents()` yields documents, `skipped` and `warnings` collect the rest."""

    def __init__(self, project: Project, kb: KnowledgeConfig) -> None:
        self.project = project
        self.kb = kb
        self.skipped: list[Skipped] = []
        self.info = SourceInfo()
        self._cleaner = Cleaner(kb.clean)
        self._redactor: Redactor | None = redactor_for(kb.redact)
        self._limit = int(kb.max_document_mb * 1024 * 1024)

    @property
    def warnings(self) -> list[str]:
        return self.info.warnings

    def documents(self) -> Iterator[Document]:
        """Every usable document in source order; a document whose bytes repeat an earlier one is skipped."""
        seen: dict[str, str] = {}
        for source in self.kb.sources:
            for doc in self._source(source):
                first = seen.setdefault(doc.doc_hash, doc.doc_id)
                if first != doc.doc_id:
                    self.skipped.append(Skipped(doc_id=doc.doc_id, reason=f"duplicate of {first}"))
                    continue
                yield doc

    def _source(self, source: SourceConfig) -> Iterator[Document]:
        path = self.project.source_path(source)
        for file in source_files(path, source, self.project.root):
            inner = file.relative_to(path).as_posix() if file != path else ""
            doc_id = f"{source.path.rstrip('/')}/{inner}" if inner else source.path
            tags = [Path(inner).parts[0]] if self.kb.access.tags_from_folder and len(Path(inner).parts) > 1 else []
            try:
                fmt = detect_format(file, source.format if file == path else "auto")
                size = file.stat().st_size
            except (DataError, OSError) as exc:
                self.skipped.append(Skipped(doc_id=doc_id, reason=str(exc)))
                continue
            if size == 0:
                self.skipped.append(Skipped(doc_id=doc_id, reason="empty file"))
            elif size > self._limit:
                reason = f"{size / 2**20:.1f} MB is over max_document_mb ({self.kb.max_document_mb}); split it or raise the limit"
                self.skipped.append(Skipped(doc_id=doc_id, reason=reason))
            elif fmt in DOCUMENT_FORMATS:
                yield self._file(file, fmt, source, doc_id, tags)
            else:
                yield from self._rows(file, fmt, source, doc_id, tags)

    def _file(self, file: Path, fmt: str, source: SourceConfig, doc_id: str, tags: list[str]) -> Document:
        def load() -> str:
            (_, record), *_ = read_file(file, fmt, source, doc_id, self.info)
            return str(record["text"])

        meta = {"source": source.path, "format": fmt, "title": Path(doc_id).stem}
        return Document(doc_id, _sha256_file(file), tags, meta, load, fmt)

    def _rows(self, file: Path, fmt: str, source: SourceConfig, file_id: str, tags: list[str]) -> Iterator[Document]:
        """Table rows: one document each, located by its row; the text column is required."""
        try:
            rows = list(read_file(file, fmt, source, file_id, self.info))
        except DataError as exc:
            self.skipped.append(Skipped(doc_id=file_id, reason=str(exc)))
            return
        text_col, tag_col = self.kb.text_column, self.kb.access.tags_column
        for where, record in rows:
            if text_col not in record:
                reason = f"no column '{text_col}' (columns: {sorted(record)}); set text_column on the knowledge base"
                self.skipped.append(Skipped(doc_id=file_id, reason=reason))
                return
            text = str(record[text_col] or "")
            meta = {k: str(v) for k, v in record.items() if k not in (text_col, tag_col) and isinstance(v, str | int | float)}
            meta = {"source": source.path, "format": fmt, **{k: v for k, v in meta.items() if len(v) <= 200}}
            if self.kb.title_column and record.get(self.kb.title_column):
                meta["title"] = str(record[self.kb.title_column])
            row_tags = sorted(set(tags) | set(_tags(record.get(tag_col)))) if tag_col else tags
            digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
            yield Document(where, digest, row_tags, meta, lambda text=text: text, fmt)  # type: ignore[misc]

    def text(self, doc: Document) -> str | None:
        """The document's clean (and redacted) text, or None after recording why it was skipped."""
        try:
            text = self._cleaner.text(doc.load())
        except DataError as exc:
            self.skipped.append(Skipped(doc_id=doc.doc_id, reason=str(exc)))
            return None
        if not text:
            reason = "no text layer (a scanned PDF?); run OCR on it first" if doc.fmt == "pdf" else "no text after cleaning"
            self.skipped.append(Skipped(doc_id=doc.doc_id, reason=reason))
            return None
        problem = self._cleaner.problem(text)
        if problem:
            self.skipped.append(Skipped(doc_id=doc.doc_id, reason=f"rejected by the quality filter: {problem}"))
            return None
        if self._redactor is not None:
            text = self._redactor.example([text])[0][0]
        return text
