"""Read a source (file or folder) into rows, each remembering its file and line, row or item.

Tables give one row per record; documents give one row per file with the columns `text` and
`file` (and `label` from the sub-folder name when the source asks for it).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tuneloom.config import SourceConfig
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


def source_files(path: Path) -> list[Path]:
    """The file itself, or every non-hidden file under a folder, sorted."""
    if not path.exists():
        raise DataError(f"data source not found: {path}. Check `data.sources[].path` (relative to the project file).")
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: the folder holds no files; add data files or remove it from `data.sources`")
    return files


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if hasattr(value, "tolist"):  # numpy arrays and scalars from Parquet
        return value.tolist()
    return value


def read_source(path: Path, source: SourceConfig) -> list[Row]:
    """Every row of a file or folder source; a folder's rows are located by their path inside it."""
    files = source_files(path)
    rows: list[Row] = []
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        fmt = detect_format(file, source.format if file == path else "auto")
        file_rows = list(read_file(file, fmt, source, name))
        if source.label_from_folder and file != path:
            label = file.relative_to(path).parts[0] if len(file.relative_to(path).parts) > 1 else ""
            for _, record in file_rows:
                record["label"] = label
        rows.extend(file_rows)
    return rows


def read_file(path: Path, fmt: str, source: SourceConfig, name: str) -> Iterator[Row]:
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: export the data again or remove it from `data.sources`.")
    if fmt in DOCUMENT_FORMATS:
        yield name, {"text": _document_text(path, fmt, source), "file": name}
        return
    try:
        if fmt == "jsonl":
            yield from _jsonl(path, source, name)
        elif fmt == "json":
            data = json.loads(documents.read_text(path, source.encoding))
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), None)
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise DataError(f"{path}: expected a JSON list of objects (or an object holding one)")
            for i, r in enumerate(data):
                yield f"{name}:item {i}", {k: _cell(v) for k, v in r.items()}
        elif fmt in ("csv", "tsv"):
            yield from _csv(path, fmt, source, name)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
            for i, r in enumerate(frame.to_dict("records")):
                yield f"{name}:row {i + 1}", {str(k): _cell(v) for k, v in r.items()}
        elif fmt == "xlsx":
            frame = pd.read_excel(
                path,
                sheet_name=source.sheet if source.sheet is not None else 0,
                dtype=str,
                keep_default_na=False,
                engine="openpyxl",
            )
            for i, r in enumerate(frame.to_dict("records")):
                yield f"{name}:row {i + 2}", {str(k): _cell(v) for k, v in r.items()}  # the sheet's own row number
        else:
            raise DataError(f"{path}: unsupported format {fmt}")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix the file") from None
    except (OSError, ValueError, KeyError, ImportError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None


def _document_text(path: Path, fmt: str, source: SourceConfig) -> str:
    if fmt == "pdf":
        return documents.read_pdf(path)
    if fmt == "docx":
        return documents.read_docx(path)
    if fmt == "html":
        return documents.read_html(path, source.encoding)
    return documents.read_text(path, source.encoding)


def _jsonl(path: Path, source: SourceConfig, name: str) -> Iterator[Row]:
    text = documents.read_text(path, source.encoding)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove that line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
        yield f"{name}:{lineno}", {k: _cell(v) for k, v in obj.items()}


def _csv(path: Path, fmt: str, source: SourceConfig, name: str) -> Iterator[Row]:
    text = documents.read_text(path, source.encoding)
    sep = source.delimiter or ("\t" if fmt == "tsv" else _sniff_delimiter(text))
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {fmt.upper()}: {_csv_problem(text, sep) or exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row: export it again with column names in the first line") from None
    # Rows are located by their 1-based record number after the header: pandas does not report
    # the line where a multi-line record starts.
    for i, r in enumerate(frame.to_dict("records")):
        yield f"{name}:row {i + 1}", {str(k): _cell(v) for k, v in r.items()}


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
