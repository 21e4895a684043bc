"""Ingest: every format, folders (with labels from sub-folders), and the bad-input corpus.

The corpus is generated into tmp_path: each broken file must give a DataError that names the
file (and line where there is one) and what to do, or land in rejects.jsonl with a reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.data_files import project, write_docx, write_pdf, write_table
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.data.documents import html_to_text
from tuneloom.errors import DataError

SPLITS = ("train", "validation", "test")
HTML = """<html><head><title>t</title><style>p{color:red}</style><script>var x = 1;</script></head>
<body><nav>Home | Shop</nav><h1>Returns policy</h1><p>You can return any device within <b>30 days</b> of delivery.</p>
<p>Refunds reach your card in 5&nbsp;working days.</p></body></html>"""


def _all_rows(ds) -> list[dict]:
    return [r for s in SPLITS for r in load_split(ds.path, s)]


def _accounting(ds) -> None:
    rejects = read_jsonl(Path(ds.path) / "rejects.jsonl")
    for s in ds.sources:
        assert s.read == s.kept + sum(s.rejected.values()) + s.duplicates
    assert len(rejects) == sum(sum(s.rejected.values()) + s.duplicates for s in ds.sources)
    assert sum(ds.counts.values()) == sum(s.kept for s in ds.sources)


def _mixed_folder(folder: Path) -> None:
    """One document per format, each about a different topic, plus tables with a `text` column."""
    folder.mkdir(parents=True)
    topics = [f"Policy number {i}: devices of kind {i} are covered for {i + 1} years of normal use." for i in range(12)]
    for ext, topic in zip(("csv", "tsv", "json", "jsonl", "parquet", "xlsx"), topics):
        write_table(folder / f"table.{ext}", [{"text": f"{topic} ({ext} row {j})", "extra": j} for j in range(2)])
    (folder / "notes.txt").write_text(topics[6], encoding="utf-8")
    (folder / "guide.md").write_text(f"# Guide\n\n{topics[7]}", encoding="utf-8")
    write_pdf(folder / "policy.pdf", [topics[8], "Second line of the PDF."])
    write_docx(folder / "contract.docx", [topics[9], "Signed in Leeds."])
    (folder / "page.html").write_text(HTML, encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text(topics[10], encoding="utf-8")
    (folder / ".hidden.txt").write_text("never read")


def test_folder_mixing_every_format(tmp_path):
    _mixed_folder(tmp_path / "corpus")
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: corpus}]\n      columns: {text: text}\n      token_stats: false\n      dedup: {near: false}\n",
    )
    ds = prepare_dataset(load_project(tmp_path), "t")
    (src,) = ds.sources
    assert src.read == 6 * 2 + 6 and src.kept == 18, src
    assert set(src.files) == {
        "table.csv",
        "table.tsv",
        "table.json",
        "table.jsonl",
        "table.parquet",
        "table.xlsx",
        "notes.txt",
        "guide.md",
        "policy.pdf",
        "contract.docx",
        "page.html",
        "sub/more.txt",
    }
    by_source = {r["source"]: r["text"] for r in _all_rows(ds)}
    assert "Policy number 8" in by_source["policy.pdf"] and "Second line of the PDF." in by_source["policy.pdf"]
    assert "Signed in Leeds." in by_source["contract.docx"]
    assert by_source["page.html"] == (
        "Returns policy\n\nYou can return any device within 30 days of delivery.\n\nRefunds reach your card in 5 working days."
    )
    assert by_source["table.xlsx:row 3"].endswith("(xlsx row 1)")  # the sheet's own row numbers
    assert by_source["table.csv:row 1"].endswith("(csv row 0)")
    assert "sub/more.txt" in by_source
    assert set(ds.model_dump()["sources"][0]["files"].values()).__len__() == 12
    _accounting(ds)


def test_folder_labels_from_subfolders(tmp_path):
    docs = tmp_path / "docs"
    for label, texts in {
        "billing": ["I was charged twice for my plan", "Invoice shows the wrong VAT amount", "Refund my subscription fee please"],
        "shipping": [
            "My parcel never arrived",
            "The courier left it at the wrong door",
            "Tracking says delivered but nothing here",
        ],
    }.items():
        (docs / label).mkdir(parents=True)
        for i, t in enumerate(texts):
            (docs / label / f"{i}.txt").write_text(t)
    (docs / "loose.txt").write_text("A file outside any label folder")
    project(
        tmp_path,
        "classification",
        "all-minilm-l6-v2",
        "      sources: [{path: docs, label_from_folder: true}]\n      columns: {text: text, label: label}\n"
        "      token_stats: false\n",
    )
    ds = prepare_dataset(load_project(tmp_path), "t")
    assert ds.labels == ["billing", "shipping"]
    assert ds.sources[0].rejected == {"missing_label": 1}
    assert Counter(r["label"] for r in _all_rows(ds)) == {"billing": 3, "shipping": 3}
    assert {r["source"] for r in _all_rows(ds) if r["label"] == "billing"} == {f"billing/{i}.txt" for i in range(3)}


def test_csv_delimiter_is_detected(tmp_path):
    rows = "\n".join(f"Frage {i};Antwort {i} mit Komma, und mehr" for i in range(10))
    (tmp_path / "qa.csv").write_text("question;answer\n" + rows + "\n")
    project(
        tmp_path,
        "chat_sft",
        "some/model",
        "      sources: [{path: qa.csv}]\n      columns: {prompt: question, response: answer}\n      token_stats: false\n",
    )
    ds = prepare_dataset(load_project(tmp_path), "t")
    assert ds.sources[0].kept == 10
    assert any(r["messages"][1]["content"] == "Antwort 3 mit Komma, und mehr" for r in _all_rows(ds))


def test_html_to_text_drops_scripts_and_navigation():
    text = html_to_text(HTML)
    assert "var x" not in text and "Home | Shop" not in text and "color:red" not in text
    assert "30 days" in text


# ------------------------------------------------------------------------------ bad-input corpus


def _cls_project(root: Path, source: str, extra: str = "") -> Path:
    return project(
        root,
        "classification",
        "all-minilm-l6-v2",
        f"      sources: [{{path: {source}{extra}}}]\n      columns: {{text: body, label: queue}}\n      token_stats: false\n",
    )


def _error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        prepare_dataset(load_project(root), "t")
    return str(info.value)


def test_unbalanced_quote_names_the_line(tmp_path):
    lines = ["body,queue"] + [f"ticket {i} text,billing" for i in range(6)]
    lines.insert(4, '"my router, it never closes,billing')  # line 5 opens a quote that never closes
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    msg = _error(_cls_project(tmp_path, "t.csv"))
    assert "t.csv: malformed CSV: line 5: a quoted field opened on this line is never closed" in msg
    assert "fix the quotes" in msg


def test_extra_fields_name_the_line(tmp_path):
    (tmp_path / "t.csv").write_text("body,queue\nfine,billing\nalso fine,billing\nbroken, with comma,billing,extra\n")
    msg = _error(_cls_project(tmp_path, "t.csv"))
    assert "line 4: 4 fields where the header has 2" in msg and "quote fields" in msg


def test_binary_file_named_csv(tmp_path):
    (tmp_path / "t.csv").write_bytes(bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n" + bytes(1000))
    msg = _error(_cls_project(tmp_path, "t.csv"))
    assert "t.csv: this is not a text file" in msg


def test_empty_file_in_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("body,queue\nhello there,billing\n")
    (tmp_path / "d" / "b.csv").write_text("")
    msg = _error(_cls_project(tmp_path, "d"))
    assert "b.csv is empty" in msg and "remove it from `data.sources`" in msg


def test_unknown_file_type_in_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("body,queue\nhello there,billing\n")
    (tmp_path / "d" / "image.png").write_bytes(b"\x89PNG")
    msg = _error(_cls_project(tmp_path, "d"))
    assert "image.png: cannot tell the format from the extension '.png'" in msg


def test_password_protected_pdf(tmp_path):
    write_pdf(tmp_path / "secret.pdf", ["Confidential terms"], password="s3cret")
    project(tmp_path, "pretrain", "some/model", "      sources: [{path: secret.pdf}]\n      columns: {text: text}\n")
    msg = _error(tmp_path)
    assert "secret.pdf: the PDF is password-protected" in msg and "unprotected copy" in msg


def test_corrupt_pdf_docx_xlsx(tmp_path):
    for name in ("broken.pdf", "broken.docx", "broken.xlsx"):
        (tmp_path / name).write_text("this is not what the extension says")
        project(tmp_path, "pretrain", "some/model", f"      sources: [{{path: {name}}}]\n      columns: {{text: text}}\n")
        msg = _error(tmp_path)
        assert name in msg and ("not a readable" in msg or "cannot read as xlsx" in msg), msg


def test_fifty_megabyte_field_is_rejected_not_fatal(tmp_path):
    rows = [{"body": f"normal ticket number {i}", "queue": "billing"} for i in range(5)]
    write_table(tmp_path / "t.csv", rows)
    with open(tmp_path / "t.csv", "a") as fh:
        fh.write('"' + "x" * (50 << 20) + '",billing\n')
    ds = prepare_dataset(load_project(_cls_project(tmp_path, "t.csv")), "t")
    assert ds.sources[0].rejected == {"too_long": 1}
    assert ds.sources[0].kept == 5
    rejects = read_jsonl(Path(ds.path) / "rejects.jsonl")
    assert rejects == [{"location": "t.csv:row 6", "reason": "too_long"}]


def test_missing_mapped_column_in_xlsx(tmp_path):
    write_table(tmp_path / "t.xlsx", [{"text": "hello", "queue": "billing"}])
    msg = _error(_cls_project(tmp_path, "t.xlsx"))
    assert "t.xlsx: mapped column(s) 'body' not found" in msg and "['text', 'queue']" in msg


def test_invalid_json_document(tmp_path):
    (tmp_path / "t.json").write_text('[{"body": "a", "queue": "b"},\n {"body": ]')
    msg = _error(_cls_project(tmp_path, "t.json"))
    assert "t.json:2: invalid JSON" in msg
