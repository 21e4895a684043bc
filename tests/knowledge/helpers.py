"""A small project with a knowledge base whose folder holds every awkward kind of document."""

from __future__ import annotations

from pathlib import Path

import yaml

from tuneloom.config import load_project

POLICY = """# Returns

## Policy
Items can be returned within 30 days of delivery. The refund goes to the original payment method.

## Exceptions
Opened software cannot be returned.

| Item | Window |
|------|--------|
| Cam Outdoor | 30 days |
| Gift cards | none |
"""


def kb_project(root: Path, embedder: str = "all-minilm-l6-v2", **kb: object):
    """A project at `root` with one chat task and the knowledge base `handbook` over root/docs (tags from folders)."""
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "qa.jsonl").write_text('{"q": "hi", "a": "hello"}\n')
    config = {
        "project": "kb-test",
        "tasks": [
            {
                "name": "support",
                "type": "chat_sft",
                "model": "smollm2-135m-instruct",
                "data": {"sources": [{"path": "qa.jsonl"}], "columns": {"prompt": "q", "response": "a"}},
            }
        ],
        "knowledge": [
            {
                "name": "handbook",
                "sources": [{"path": "docs"}],
                "access": {"tags_from_folder": True},
                "embedder": {"model": embedder},
                **kb,
            }
        ],
    }
    (root / "tuneloom.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return load_project(root / "tuneloom.yaml")


def write_docs(docs: Path) -> None:
    """Policies in Markdown, cp1252 text, DOCX and HTML, plus an empty file, a duplicate and a scanned PDF."""
    from docx import Document
    from pypdf import PdfWriter

    (docs / "public").mkdir(parents=True, exist_ok=True)
    (docs / "hr").mkdir(exist_ok=True)
    (docs / "public" / "returns.md").write_text(POLICY)
    (docs / "hr" / "salary.txt").write_text("Salary reviews happen every April. Managers submit ratings by March 15.\n")
    (docs / "hr" / "salary-copy.txt").write_bytes((docs / "hr" / "salary.txt").read_bytes())
    (docs / "public" / "cafe.txt").write_bytes("The café serves crème brûlée to staff on Fridays.\n".encode("cp1252"))
    (docs / "public" / "empty.md").write_bytes(b"")
    document = Document()
    document.add_paragraph("Laptops are replaced every three years by the IT desk.")
    document.save(str(docs / "public" / "laptops.docx"))
    (docs / "public" / "travel.html").write_text(
        "<html><body><nav>menu</nav><h1>Travel</h1><p>Book trains for trips under four hours.</p></body></html>"
    )
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)  # a page with no text layer, like a scan
    with open(docs / "public" / "scan.pdf", "wb") as fh:
        writer.write(fh)
    with open(docs / "public" / "huge.txt", "wb") as fh:  # 200 MB, sparse: costs no disk and is never read
        fh.truncate(200 * 2**20)
    (docs / "notes.txt").write_text("Untagged: the office opens at 8 am.\n")
