"""Read source files into rows of strings, each remembering its file and line or row number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tuneloom.config import SourceConfig
from tuneloom.errors import DataError


FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}


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


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return value


def read_source(path: Path, source: SourceConfig) -> list[tuple[str, dict[str, Any]]]:
    """Rows as (location, record) pairs; location is 'file:line' for text formats, 'file:row N' otherwise."""
    if not path.exists():
        raise DataError(f"data source not found: {path}. Check `data.sources[].path` (relative to the project file).")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: export the data again or remove it from `data.sources`.")
    fmt = detect_format(path, source.format)
    name = path.name
    try:
        if fmt == "jsonl":
            rows = []
            with open(path, encoding="utf-8-sig") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove that line"
                        ) from None
                    if not isinstance(obj, dict):
                        raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
                    rows.append((f"{name}:{lineno}", {k: _cell(v) for k, v in obj.items()}))
            return rows
        if fmt == "json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), None)
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise DataError(f"{path}: expected a JSON list of objects (or an object holding one)")
            return [(f"{name}:item {i}", {k: _cell(v) for k, v in r.items()}) for i, r in enumerate(data)]
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
            # Line numbers: header is line 1; pandas does not report where multi-line rows start,
            # so rows are located by their 1-based record number after the header.
            return [(f"{name}:row {i + 1}", {k: _cell(v) for k, v in r.items()}) for i, r in enumerate(frame.to_dict("records"))]
        if fmt == "parquet":
            frame = pd.read_parquet(path)
            return [(f"{name}:row {i + 1}", {k: _cell(v) for k, v in r.items()}) for i, r in enumerate(frame.to_dict("records"))]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); re-export it as UTF-8"
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {fmt.upper()}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as {fmt}: {exc}") from None
    raise DataError(f"{path}: unsupported format {fmt}")
