"""Writers for the test corpus: every format `tuneloom data prepare` reads, good and broken."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def write_pdf(path: Path, lines: list[str], password: str | None = None) -> Path:
    """A one-page PDF with real text (Helvetica); encrypted with `password` when given."""
    content = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(f"({line.replace('(', '[').replace(')', ']')}) Tj T*" for line in lines)
        + " ET"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content.encode("latin-1") + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    if password:
        from pypdf import PdfWriter

        writer = PdfWriter(clone_from=str(path))
        writer.encrypt(password)
        with open(path, "wb") as fh:
            writer.write(fh)
    return path


def write_docx(path: Path, paragraphs: list[str]) -> Path:
    from docx import Document

    doc = Document()
    for p in paragraphs:
        doc.add_paragraph(p)
    doc.save(str(path))
    return path


def write_table(path: Path, rows: list[dict]) -> Path:
    """CSV, TSV, JSON, JSONL, Parquet or xlsx by the extension."""
    frame = pd.DataFrame(rows)
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        raise ValueError(suffix)
    return path


def project(root: Path, task_type: str, model: str | Path, data_yaml: str, name: str = "t") -> Path:
    """A one-task project file; `data_yaml` is the body of `data:` indented by 6 spaces."""
    (root / "tuneloom.yaml").write_text(
        f"project: p\nworkspace: ws\ntasks:\n  - name: {name}\n    type: {task_type}\n    model: {model}\n    data:\n{data_yaml}"
    )
    return root
