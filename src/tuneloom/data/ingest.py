"""Read a source (file or folder) into rows, each remembering its file and line, row or item.

Tables give one row per record; documents give one row per file with the columns `text` and
`file` (and `label` from the sub-folder name when the source asks for it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tuneloom.config import SourceConfig
from tuneloom.config.paths import inside
from tuneloom.data import documents
from tuneloom.errors import DataError

Row = tuple[str, dict[str, Any]]  # (location such as 'tickets.csv:row 4', record)

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
}
DOCUMENT_FORMATS = ("text", "pdf", "docx", "html")


def detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension '{path.suffix}'; set `format:` on the source "
            f"to one of {sorted(set(FORMATS.values()))}"
        )
    return fmt


@dataclass
class SourceInfo:
    """What reading a source learned besides its rows: each text file's encoding, and warnings."""

    encodings: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self, name: str, decoded: documents.Decoded) -> str:
        self.encodings[name] = decoded.encoding
        if decoded.warning:
            self.warnings.append(decoded.warning)
        return decoded.text

    def encoding(self) -> str | None:
        """The encoding(s) the source's text files were read with, e.g. 'utf-8' or 'cp1252, utf-8'."""
        return ", ".join(sorted(set(self.encodings.values()))) or None


def source_files(path: Path, source: SourceConfig | None = None, root: Path | None = None) -> list[Path]:
    """The file itself, or every non-hidden file under a folder, sorted.

    Symbolic links inside a folder are refused (naming the link) unless the source sets
    `allow_symlinks`; their targets must then lie inside `root` (default: the folder) unless it
    also sets `allow_outside_project`.
    """
    if not path.exists():
        raise DataError(f"data source not found: {path}. Check `data.sources[].path` (relative to the project file).")
    if path.is_file():
        return [path]
    files = sorted(_folder_files(path, source or SourceConfig(path=str(path)), root or path))
    if not files:
        raise DataError(f"{path}: the folder holds no files; add data files or remove it from `data.sources`")
    return files


def _folder_files(folder: Path, source: SourceConfig, root: Path) -> Iterator[Path]:
    def unreadable(exc: OSError) -> None:
        raise DataError(f"{exc.filename}: cannot read the folder ({exc.strerror}); check its permissions")

    seen = {folder.resolve()}
    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=source.allow_symlinks):
        base = Path(dirpath)
        dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".") and _new_folder(base / d, seen)]
        for name in [*dirnames, *filenames]:
            entry = base / name
            if entry.is_symlink():
                _check_link(entry, folder, source, root)
        yield from (base / f for f in filenames if not f.startswith(".") and (base / f).is_file())


def _new_folder(folder: Path, seen: set[Path]) -> bool:
    """False for a folder already walked (a linked folder pointing back up the tree)."""
    resolved = folder.resolve()
    if resolved in seen:
        return False
    seen.add(resolved)
    return True


def _check_link(link: Path, folder: Path, source: SourceConfig, root: Path) -> None:
    where = link.relative_to(folder).as_posix()
    if not source.allow_symlinks:
        raise DataError(
            f"{folder}: {where} is a symbolic link; Tuneloom does not follow links into training data. "
            f"Copy the file into the folder, or set `allow_symlinks: true` on the source if you trust it."
        )
    if not source.allow_outside_project and not inside(link.resolve(), root.resolve()):
        raise DataError(
            f"{folder}: the symbolic link {where} points outside the project folder; "
            f"set `allow_outside_project: true` on the source if reading it is intended."
        )


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if hasattr(value, "tolist"):  # numpy arrays and scalars from Parquet
        return value.tolist()
    return value


def read_source(path: Path, source: SourceConfig, info: SourceInfo | None = None, root: Path | None = None) -> list[Row]:
    """Every row of a file or folder source; a folder's rows are located by their path inside it.

    `info` collects each text file's encoding and encoding warnings; `root` confines link targets.
    """
    info = info if info is not None else SourceInfo()
    rows: list[Row] = []
    for file in source_files(path, source, root):
        name = file.name if file == path else file.relative_to(path).as_posix()
        fmt = detect_format(file, source.format if file == path else "auto")
        file_rows = list(read_file(file, fmt, source, name, info))
        if source.label_from_folder and file != path:
            label = file.relative_to(path).parts[0] if len(file.relative_to(path).parts) > 1 else ""
            for _, record in file_rows:
                record["label"] = label
        rows.extend(file_rows)
    return rows


def read_file(path: Path, fmt: str, source: SourceConfig, name: str, info: SourceInfo | None = None) -> Iterator[Row]:
    info = info if info is not None else SourceInfo()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror}); check its permissions") from None
    if size == 0:
        raise DataError(f"{path} is empty: export the data again or remove it from `data.sources`.")
    if fmt in DOCUMENT_FORMATS:
        yield name, {"text": _document_text(path, fmt, source, name, info), "file": name}
        return
    try:
        if fmt == "jsonl":
            yield from _jsonl(path, info.record(name, documents.read_text(path, source.encoding)), name)
        elif fmt == "json":
            yield from _json(path, info.record(name, documents.read_text(path, source.encoding)), name)
        elif fmt in ("csv", "tsv"):
            yield from _csv(path, fmt, source, name, info.record(name, documents.read_text(path, source.encoding)))
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
            for i, r in enumerate(frame.to_dict("records")):
                yield f"{name}:row {i + 1}", {str(k): _cell(v) for k, v in r.items()}
        elif fmt == "xlsx":
            yield from _xlsx(path, source, name)
        else:
            raise DataError(f"{path}: unsupported format {fmt}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix the file") from None
    except (OSError, ValueError, KeyError, ImportError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None


def _xlsx(path: Path, source: SourceConfig, name: str) -> Iterator[Row]:
    frame = pd.read_excel(
        path,
        sheet_name=source.sheet if source.sheet is not None else 0,
        dtype=str,
        keep_default_na=False,
        engine="openpyxl",
    )
    for i, r in enumerate(frame.to_dict("records")):
        yield f"{name}:row {i + 2}", {str(k): _cell(v) for k, v in r.items()}  # the sheet's own row number


def _document_text(path: Path, fmt: str, source: SourceConfig, name: str, info: SourceInfo) -> str:
    if fmt == "pdf":
        return documents.read_pdf(path)
    if fmt == "docx":
        return documents.read_docx(path)
    if fmt == "html":
        return info.record(name, documents.read_html(path, source.encoding))
    return info.record(name, documents.read_text(path, source.encoding))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _loads(text: str, path: Path, where: str) -> Any:
    """One JSON value; too deep a nesting or a lone surrogate escape (not valid Unicode) is a DataError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError(f"{path}:{where}: JSON nested too deeply to read; flatten the data") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(
                f"{path}:{where}: the escape for {exc.object[exc.start]!a} is half of a surrogate pair, "
                f"not a character (invalid Unicode); fix or remove it"
            ) from None
    return value


def _json(path: Path, text: str, name: str) -> Iterator[Row]:
    data = _loads(text, path, "1")
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects (or an object holding one)")
    for i, r in enumerate(data):
        yield f"{name}:item {i}", {k: _cell(v) for k, v in r.items()}


def _jsonl(path: Path, text: str, name: str) -> Iterator[Row]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = _loads(line, path, str(lineno))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove that line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
        yield f"{name}:{lineno}", {k: _cell(v) for k, v in obj.items()}


def _csv(path: Path, fmt: str, source: SourceConfig, name: str, text: str) -> Iterator[Row]:
    sep = source.delimiter or ("\t" if fmt == "tsv" else _sniff_delimiter(text))
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {fmt.upper()}: {_csv_problem(text, sep) or exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row: export it again with column names in the first line") from None
    if not isinstance(frame.index, pd.RangeIndex):  # every row had more fields than the header: pandas made an index of them
        raise DataError(f"{path}: malformed {fmt.upper()}: {_csv_problem(text, sep)}")
    _unique_header(path, text, sep)
    # Rows are located by their 1-based record number after the header: pandas does not report
    # the line where a multi-line record starts.
    for i, r in enumerate(frame.to_dict("records")):
        yield f"{name}:row {i + 1}", {str(k): _cell(v) for k, v in r.items()}


def _unique_header(path: Path, text: str, sep: str) -> None:
    """Refuse a header naming a column twice (pandas would rename the second one and a mapping would miss it)."""
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    except csv.Error:
        return  # pandas read it; the csv module's field size limit is not worth a refusal here
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise DataError(f"{path}: line 1: the column '{column}' appears twice in the header; rename or remove one of them")
        seen.add(column)


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _csv_problem(text: str, sep: str) -> str | None:
    """Where a CSV breaks, by line, found by re-reading it with the csv module (which counts lines)."""
    csv.field_size_limit(2**31 - 1)  # a huge field is a row to reject later, not a parse error
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for row in reader:
            if header is None:
                header = row
            elif len(row) != len(header):
                return (
                    f"line {start}: {len(row)} fields where the header has {len(header)}; "
                    f"quote fields that contain '{sep}' or fix that line"
                )
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc) or "EOF" in str(exc):
            return f"line {start}: a quoted field opened on this line is never closed (unbalanced '\"'); fix the quotes"
        return f"line {start}: {exc}"
    return None
