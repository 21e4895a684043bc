"""Hostile data files, generated into a temporary project folder.

Each `Case` writes its files, names the task and the source, and states its exact outcome: a
`DataError` whose message holds every string in `message` (the file, the line, the fix), or a
dataset whose rejected rows are exactly `rejects` (location, reason) with `kept` rows kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.data_files import write_docx, write_pdf, write_table

CLS_COLUMNS = "{text: body, label: queue}"


@dataclass
class Case:
    id: str
    build: Callable[[Path], None]
    source: str = "t.csv"
    source_extra: str = ""
    task_type: str = "classification"
    columns: str = CLS_COLUMNS
    message: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()  # strings the message must not hold (a link's target)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    kept: int | None = None
    duplicates: int = 0
    encoding: str | None = None
    texts: tuple[str, ...] = ()  # texts some kept example must equal exactly
    warning: str | None = None

    @property
    def fails(self) -> bool:
        return bool(self.message)


def body(i: int) -> str:
    """A distinct ticket text (no two share a word 5-gram, so no near duplicates)."""
    return f"customer {i} reports problem {i * 7} with order {i * 13} and asks for help {i * 3}"


def good_rows(n: int = 6) -> list[dict[str, str]]:
    return [{"body": body(i), "queue": "billing" if i % 2 else "shipping"} for i in range(n)]


def csv_text(extra_lines: list[str] | None = None, n: int = 6) -> str:
    lines = ["body,queue"] + [f"{r['body']},{r['queue']}" for r in good_rows(n)] + (extra_lines or [])
    return "\n".join(lines) + "\n"


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return build


def _jsonl(rows: list[object], name: str = "t.jsonl") -> Callable[[Path], None]:
    return _write(name, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _with_good(name: str, rows: list[object]) -> Callable[[Path], None]:
    return _jsonl([*good_rows(4), *rows], name)


def _folder_with(extra: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        (root / "d").mkdir()
        write_table(root / "d" / "a.csv", good_rows())
        extra(root)

    return build


def _symlink_in_folder(root: Path) -> None:
    (root / "d" / "b.txt").symlink_to("/etc/passwd")


def _symlinked_file(root: Path) -> None:
    (root / "real.txt").write_text(body(1))
    (root / "t.txt").symlink_to(root / "real.txt")


def _symlink_outside(root: Path) -> None:
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "shared.csv").write_text("body,queue\n" + "".join(f"{body(i + 50)},billing\n" for i in range(3)))
    (root / "d" / "shared.csv").symlink_to(outside / "shared.csv")


def _outside_file(root: Path) -> None:
    outside = root.parent / f"{root.name}-shared"
    outside.mkdir(exist_ok=True)
    write_table(outside / "t.csv", good_rows())


def _wide_csv(root: Path) -> None:
    header = ",".join(f"column_{i}" for i in range(20_000))
    (root / "t.csv").write_text(header + "\n" + ",".join("x" for _ in range(20_000)) + "\n")


def _big_field(root: Path) -> None:
    (root / "t.csv").write_text(csv_text(['"' + "x" * (50 << 20) + '",billing']))


def _corrupt(name: str) -> Callable[[Path], None]:
    return _write(name, b"PK\x03\x04 this is not what the extension says \x00\x01")


def _pdf_with_password(root: Path) -> None:
    write_pdf(root / "t.pdf", ["Confidential terms"], password="s3cret")


def _empty_docx(root: Path) -> None:
    write_docx(root / "t.docx", [])


def _folder_with_empty_file(root: Path) -> None:
    (root / "d").mkdir()
    write_table(root / "d" / "a.csv", good_rows())
    (root / "d" / "b.csv").write_text("")


def _insert(text: str, index: int, line: str) -> str:
    lines = text.splitlines()
    lines.insert(index, line)
    return "\n".join(lines) + "\n"


def _nested(depth: int) -> str:
    return '{"body": ' + "[" * depth + "]" * depth + ', "queue": "billing"}'


NER_COLUMNS = "{text: text, entities: entities}"
CHAT_COLUMNS = "{messages: messages}"
PREF_COLUMNS = "{prompt: prompt, chosen: chosen, rejected: rejected}"


def _chat(messages: list[object]) -> dict[str, object]:
    return {"messages": messages}


def _turns(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": body(i)}, {"role": "assistant", "content": f"answer {i} " + body(i + 100)}]


CAFE = "Café crème costs 3€ – “très” cher"
CASES = [
    # ---------------------------------------------------------------- CSV structure
    Case(
        "unbalanced_quote",
        _write("t.csv", _insert(csv_text(), 4, '"my router, it never closes,billing')),
        message=("t.csv: malformed CSV: line 5: a quoted field opened on this line is never closed", "fix the quotes"),
    ),
    Case(
        "extra_fields",
        _write("t.csv", csv_text(["broken, with comma,billing,extra"])),
        message=("t.csv: malformed CSV: line 8: 4 fields where the header has 2", "quote fields"),
    ),
    Case(
        "tsv_extra_fields",
        _write("t.tsv", "body\tqueue\nfine text here\tbilling\nmore\ttext\there\n"),
        source="t.tsv",
        message=("t.tsv: malformed TSV: line 3: 3 fields where the header has 2",),
    ),
    Case(
        "binary_named_csv",
        _write("t.csv", bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n" + bytes(1000)),
        message=("t.csv: this is not a text file",),
    ),
    Case("empty_csv", _write("t.csv", ""), message=("t.csv is empty", "remove it from `data.sources`")),
    Case("blank_lines_only", _write("t.csv", "\n\n\n"), message=("t.csv has no header row",)),
    Case("header_only", _write("t.csv", "body,queue\n"), message=("no usable rows", "t.csv: no rows to read")),
    Case(
        "duplicated_header",
        _write("t.csv", "body,queue,body\nfirst text,billing,second text\n"),
        message=("t.csv: line 1: the column 'body' appears twice in the header",),
    ),
    Case(
        "missing_mapped_column",
        _write("t.csv", "text,queue\nhello there,billing\n"),
        message=("t.csv: mapped column(s) 'body' not found", "['text', 'queue']"),
    ),
    Case(
        "missing_column_20000_wide",
        _wide_csv,
        message=("t.csv: mapped column(s) 'queue', 'body' not found", "and 19980 more (20000 in all)"),
    ),
    Case("fifty_megabyte_field", _big_field, rejects=[("t.csv:row 7", "too_long")], kept=6),
    Case(
        "extra_separator_in_last_row",
        _write("t.csv", csv_text(["trailing,billing,"])),
        message=("t.csv: malformed CSV: line 8: 3 fields where the header has 2",),
    ),
    Case(
        "crlf_and_utf8_bom",
        _write("t.csv", b"\xef\xbb\xbf" + csv_text().replace("\n", "\r\n").encode()),
        kept=6,
        encoding="utf-8-sig",
    ),
    Case("semicolon_delimited", _write("t.csv", csv_text().replace(",", ";")), kept=6),
    Case(
        "nul_bytes_in_cells",
        _write("t.csv", csv_text(["null\x00 byte text in a row,billing"])),
        kept=7,
        texts=("null byte text in a row",),
    ),
    # ---------------------------------------------------------------- encodings
    Case(
        "cp1252_csv", _write("t.csv", f"body,queue\n{CAFE},billing\n".encode("cp1252")), kept=1, encoding="cp1252", texts=(CAFE,)
    ),
    Case(
        "latin1_csv",
        _write("t.csv", "body,queue\nÇa coûte cher à Zürich,billing\n".encode("latin-1")),
        kept=1,
        encoding="cp1252",
        texts=("Ça coûte cher à Zürich",),
    ),
    Case(
        "every_row_one_field_too_many",
        _write("t.csv", "body,queue\nÇa coûte, señor,billing\nmore, text,billing\n"),
        message=("t.csv: malformed CSV: line 2: 3 fields where the header has 2", "quote fields"),
    ),
    Case("utf16_with_bom", _write("t.csv", csv_text().encode("utf-16")), kept=6, encoding="utf-16"),
    Case("utf16_without_bom", _write("t.csv", csv_text().encode("utf-16-le")), message=("t.csv: this is not a text file",)),
    Case(
        "cyrillic_cp1251",
        _write("t.txt", ("Привет, это обычный текст на русском языке. " * 20).encode("cp1251")),
        source="t.txt",
        task_type="pretrain",
        columns="{text: text}",
        kept=1,
        warning="the encoding was guessed as",
    ),
    Case(
        "declared_encoding_wrong",
        _write("t.csv", f"body,queue\n{CAFE},billing\n".encode("cp1252")),
        source_extra=", encoding: ascii",
        message=("t.csv: cannot decode as ascii", "fix `encoding:` on the source"),
    ),
    Case(
        "declared_encoding_unknown",
        _write("t.csv", csv_text()),
        source_extra=", encoding: klingon",
        message=("t.csv: cannot decode as klingon",),
    ),
    Case(
        "declared_encoding_used",
        _write("t.csv", f"body,queue\n{CAFE},billing\n".encode("cp1252")),
        source_extra=", encoding: cp1252",
        kept=1,
        encoding="cp1252",
        texts=(CAFE,),
    ),
    # ---------------------------------------------------------------- cleaning
    Case(
        "bidi_override",
        _jsonl([{"body": "invoice \u202egnp.exe\u202c attached \u2066x\u2069", "queue": "billing"}]),
        source="t.jsonl",
        kept=1,
        texts=("invoice gnp.exe attached x",),
    ),
    Case(
        "zero_width_and_controls",
        _jsonl([{"body": "pay\u200bment\x07 failed\u200f", "queue": "billing"}]),
        source="t.jsonl",
        kept=1,
        texts=("payment failed",),
    ),
    Case(
        "mostly_symbols",
        _with_good("t.jsonl", [{"body": "#$%^&*()!@#$%^&*(){}[]", "queue": "billing"}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "mostly_symbols")],
        kept=4,
    ),
    Case(
        "exact_duplicates",
        _with_good("t.jsonl", [{"body": body(1).upper(), "queue": "billing"}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "exact_duplicate")],
        kept=4,
        duplicates=1,
    ),
    # ---------------------------------------------------------------- JSON and JSONL
    Case(
        "json_list_in_text_field",
        _with_good("t.jsonl", [{"body": ["x", "y"], "queue": "billing"}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "not_text")],
        kept=4,
    ),
    Case(
        "json_object_in_text_field",
        _with_good("t.jsonl", [{"body": {"a": 1}, "queue": "billing"}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "not_text")],
        kept=4,
    ),
    Case(
        "number_in_text_field", _with_good("t.jsonl", [{"body": 42, "queue": "billing"}]), source="t.jsonl", kept=5, texts=("42",)
    ),
    Case(
        "null_text_field",
        _with_good("t.jsonl", [{"body": None, "queue": "billing"}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "empty_or_short_text")],
        kept=4,
    ),
    Case(
        "null_label",
        _with_good("t.jsonl", [{"body": body(77), "queue": None}]),
        source="t.jsonl",
        rejects=[("t.jsonl:5", "missing_label")],
        kept=4,
    ),
    Case(
        "invalid_json_line",
        _with_good("t.jsonl", ['{"body": "half a line", "queue":']),
        source="t.jsonl",
        message=("t.jsonl:5: invalid JSON", "fix or remove that line"),
    ),
    Case(
        "jsonl_array_line",
        _with_good("t.jsonl", ['["body", "queue"]']),
        source="t.jsonl",
        message=("t.jsonl:5: expected a JSON object per line, got list",),
    ),
    Case(
        "jsonl_lone_surrogate",
        _with_good("t.jsonl", ['{"body": "broken \\ud800 text", "queue": "billing"}']),
        source="t.jsonl",
        message=("t.jsonl:5:", "surrogate", "invalid Unicode"),
    ),
    Case("jsonl_deeply_nested", _jsonl([_nested(100_000)]), source="t.jsonl", message=("t.jsonl:1: JSON nested too deeply",)),
    Case(
        "json_deeply_nested",
        _write("t.json", "[" + _nested(100_000) + "]"),
        source="t.json",
        message=("t.json:1: JSON nested too deeply",),
    ),
    Case(
        "json_not_a_list",
        _write("t.json", '{"body": "just one", "queue": "billing"}'),
        source="t.json",
        message=("t.json: expected a JSON list of objects",),
    ),
    Case(
        "json_invalid",
        _write("t.json", '[{"body": "a", "queue": "b"},\n {"body": ]'),
        source="t.json",
        message=("t.json:2: invalid JSON",),
    ),
    Case(
        "deeply_nested_json_cell",
        _write("t.csv", 'messages\n"' + "[" * 100_000 + "]" * 100_000 + '"\n'),
        task_type="chat_sft",
        columns=CHAT_COLUMNS,
        message=("no usable rows", "invalid_messages (1)", "rejects.jsonl"),
    ),
    # ---------------------------------------------------------------- documents and other formats
    Case(
        "corrupt_pdf",
        _corrupt("t.pdf"),
        source="t.pdf",
        task_type="pretrain",
        columns="{text: text}",
        message=("t.pdf: not a readable PDF",),
    ),
    Case(
        "corrupt_docx",
        _corrupt("t.docx"),
        source="t.docx",
        task_type="pretrain",
        columns="{text: text}",
        message=("t.docx: not a readable DOCX file",),
    ),
    Case("corrupt_xlsx", _corrupt("t.xlsx"), source="t.xlsx", message=("t.xlsx: cannot read as xlsx",)),
    Case("corrupt_parquet", _corrupt("t.parquet"), source="t.parquet", message=("t.parquet: cannot read as parquet",)),
    Case(
        "password_pdf",
        _pdf_with_password,
        source="t.pdf",
        task_type="pretrain",
        columns="{text: text}",
        message=("t.pdf: the PDF is password-protected", "unprotected copy"),
    ),
    Case(
        "empty_docx",
        _empty_docx,
        source="t.docx",
        task_type="pretrain",
        columns="{text: text}",
        message=("no usable rows", "empty_or_short_text (1)"),
    ),
    Case(
        "xlsx_missing_sheet",
        lambda root: write_table(root / "t.xlsx", good_rows()),
        source="t.xlsx",
        source_extra=", sheet: nope",
        message=("t.xlsx: cannot read as xlsx", "nope"),
    ),
    Case(
        "unknown_extension",
        _write("t.dat", csv_text()),
        source="t.dat",
        message=("t.dat: cannot tell the format from the extension '.dat'", "set `format:`"),
    ),
    Case(
        "unknown_extension_in_folder",
        _folder_with(_write("d/image.png", b"\x89PNG")),
        source="d",
        message=("image.png: cannot tell the format from the extension '.png'",),
    ),
    Case("empty_file_in_folder", _folder_with_empty_file, source="d", message=("b.csv is empty",)),
    Case(
        "html_scripts_only",
        _write("t.html", "<html><script>var x = 1;</script><style>p{}</style></html>"),
        source="t.html",
        task_type="pretrain",
        columns="{text: text}",
        message=("no usable rows", "empty_or_short_text (1)"),
    ),
    # ---------------------------------------------------------------- task rows
    Case(
        "chat_bad_roles",
        _jsonl([_chat([{"role": "hacker", "content": "x"}]), _chat(_turns(1))]),
        source="t.jsonl",
        task_type="chat_sft",
        columns=CHAT_COLUMNS,
        rejects=[("t.jsonl:1", "invalid_messages")],
        kept=1,
    ),
    Case(
        "chat_every_row_bad",
        _jsonl([_chat([{"role": "root", "content": body(i)}]) for i in range(3)] + [_chat([])]),
        source="t.jsonl",
        task_type="chat_sft",
        columns=CHAT_COLUMNS,
        message=("no usable rows", "t.jsonl: read 4; rejected: invalid_messages (4)", "rejected-", "rejects.jsonl"),
    ),
    Case(
        "chat_empty_messages",
        _jsonl([_chat([]), _chat("not a list"), _chat(_turns(2))]),
        source="t.jsonl",
        task_type="chat_sft",
        columns=CHAT_COLUMNS,
        rejects=[("t.jsonl:1", "invalid_messages"), ("t.jsonl:2", "invalid_messages")],
        kept=1,
    ),
    Case(
        "chat_no_assistant",
        _jsonl([_chat(_turns(3)[:1]), _chat(_turns(4))]),
        source="t.jsonl",
        task_type="chat_sft",
        columns=CHAT_COLUMNS,
        rejects=[("t.jsonl:1", "no_assistant_turn")],
        kept=1,
    ),
    Case(
        "chat_prompt_is_a_list",
        _jsonl([{"q": ["x"], "a": "fine answer"}, {"q": body(5), "a": body(6)}]),
        source="t.jsonl",
        task_type="chat_sft",
        columns="{prompt: q, response: a}",
        rejects=[("t.jsonl:1", "not_text")],
        kept=1,
    ),
    Case(
        "ner_out_of_range",
        _jsonl(
            [
                {"text": "Ann lives in Leeds", "entities": [{"start": 13, "end": 99, "label": "LOC"}]},
                {"text": "Bob lives in York", "entities": [[0, 3, "PER"]]},
            ]
        ),
        source="t.jsonl",
        task_type="ner",
        columns=NER_COLUMNS,
        rejects=[("t.jsonl:1", "entity_out_of_range")],
        kept=1,
    ),
    Case(
        "ner_every_span_bad",
        _jsonl([{"text": f"name {i} here", "entities": [[-1, 2, "PER"]]} for i in range(3)]),
        source="t.jsonl",
        task_type="ner",
        columns=NER_COLUMNS,
        message=("no usable rows", "entity_out_of_range (3)", "rejects.jsonl"),
    ),
    Case(
        "ner_overlapping_and_invalid",
        _jsonl(
            [
                {"text": "Ann Lee", "entities": [[0, 3, "PER"], [2, 7, "PER"]]},
                {"text": "Bob", "entities": "nonsense"},
                {"text": "Cy Young", "entities": [[0, 2, "PER"]]},
            ]
        ),
        source="t.jsonl",
        task_type="ner",
        columns=NER_COLUMNS,
        rejects=[("t.jsonl:1", "overlapping_entities"), ("t.jsonl:2", "invalid_entities")],
        kept=1,
    ),
    Case(
        "preference_equal_answers",
        _jsonl(
            [
                {"prompt": body(1), "chosen": "same", "rejected": "same"},
                {"prompt": body(2), "chosen": "good one", "rejected": "bad one"},
                {"prompt": "", "chosen": "a", "rejected": "b"},
            ]
        ),
        source="t.jsonl",
        task_type="preference",
        columns=PREF_COLUMNS,
        rejects=[("t.jsonl:1", "chosen_equals_rejected"), ("t.jsonl:3", "empty_or_invalid_prompt")],
        kept=1,
    ),
    Case(
        "invalid_split_value",
        _jsonl([{**r, "s": "train" if i else "holdout"} for i, r in enumerate(good_rows())]),
        source="t.jsonl",
        columns="{text: body, label: queue, split: s}",
        rejects=[("t.jsonl:1", "invalid_split_value")],
        kept=5,
    ),
    # ---------------------------------------------------------------- paths and links
    Case(
        "symlink_in_folder",
        _folder_with(_symlink_in_folder),
        source="d",
        message=("b.txt is a symbolic link", "allow_symlinks: true"),
        absent=("/etc/passwd",),
    ),
    Case(
        "symlinked_file",
        _symlinked_file,
        source="t.txt",
        task_type="pretrain",
        columns="{text: text}",
        message=("t.txt is a symbolic link", "allow_symlinks: true"),
        absent=("real.txt",),
    ),
    Case(
        "symlink_allowed_but_outside",
        _folder_with(_symlink_outside),
        source="d",
        source_extra=", allow_symlinks: true",
        message=("the symbolic link shared.csv points outside the project folder", "allow_outside_project: true"),
    ),
    Case(
        "symlink_allowed_and_outside_allowed",
        _folder_with(_symlink_outside),
        source="d",
        source_extra=", allow_symlinks: true, allow_outside_project: true",
        kept=9,
    ),
    Case(
        "relative_path_outside",
        _write("t.csv", csv_text()),
        source="../../../../etc/passwd",
        source_extra=", format: csv",
        message=("data source ../../../../etc/passwd", "is outside the project folder", "allow_outside_project: true"),
    ),
    Case(
        "absolute_path_outside",
        _write("t.csv", csv_text()),
        source="/etc/passwd",
        source_extra=", format: csv",
        message=("data source /etc/passwd", "is outside the project folder"),
    ),
    Case(
        "outside_path_allowed",
        _outside_file,
        source="../{root}-shared/t.csv",
        source_extra=", allow_outside_project: true",
        kept=6,
    ),
    Case("source_not_found", _write("other.csv", csv_text()), source="t.csv", message=("data source not found",)),
]
