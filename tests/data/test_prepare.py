"""Data preparation: ingest, clean, deduplicate, split, version; every row accounted for."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CHAT_TASK, CLS_TASK, write_csv, write_jsonl
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.data.clean import dedup_key, normalize_text
from tuneloom.errors import DataError
from tuneloom.workspace import Workspace

SPLITS = ("train", "validation", "test")


def _latest(ws: Workspace, task: str) -> Path:
    """The dataset folder the LATEST pointer names."""
    pointer = ws.root / "datasets" / task / "LATEST"
    return pointer.parent / pointer.read_text().strip()


def _prepare(root: Path, task: str, overrides: list[str] | None = None):
    return prepare_dataset(load_project(root, overrides), task)


def _set_source(root: Path, task: str, path: str, extra: str = "") -> None:
    """Point the task's (only) source at `path` by rewriting the project file."""
    cfg = root / "tuneloom.yaml"
    old = "data/qa.jsonl" if task == CHAT_TASK else "data/tickets.csv"
    cfg.write_text(cfg.read_text().replace(f"- path: {old}", f"- path: {path}{extra}"))


def _check_accounting(ds) -> None:
    folder = Path(ds.path)
    rejects = read_jsonl(folder / "rejects.jsonl")
    for s in ds.sources:
        assert s.read == s.kept + sum(s.rejected.values()) + s.duplicates, s
    total_rejected = sum(sum(s.rejected.values()) for s in ds.sources)
    total_dups = sum(s.duplicates for s in ds.sources)
    assert len(rejects) == total_rejected + total_dups
    assert all(r["reason"] for r in rejects)
    assert len({r["location"] for r in rejects}) == len(rejects)  # each row listed once
    reasons = Counter(r["reason"] for r in rejects)
    expected = Counter()
    for s in ds.sources:
        expected.update(s.rejected)
    if total_dups:
        expected["exact_duplicate"] = total_dups
    assert reasons == expected
    # splits hold exactly the kept rows, each once
    rows = {split: load_split(folder, split) for split in SPLITS}
    assert {k: len(v) for k, v in rows.items()} == ds.counts
    assert sum(ds.counts.values()) == sum(s.kept for s in ds.sources)
    ids = [r["id"] for split in SPLITS for r in rows[split]]
    assert len(ids) == len(set(ids))
    kept_locations = {r["source"] for split in SPLITS for r in rows[split]}
    assert kept_locations.isdisjoint({r["location"] for r in rejects})


def test_chat_accounting(data_project_dir):
    ds = _prepare(data_project_dir, CHAT_TASK)
    assert ds.reused is False and ds.labels is None
    (src,) = ds.sources
    # conftest.chat_rows: 58 unique, 2 duplicates, 1 empty answer, 1 empty question
    assert (src.read, src.kept, src.duplicates) == (62, 58, 2)
    assert src.rejected == {"empty_or_short_response": 1, "empty_or_short_prompt": 1}
    _check_accounting(ds)
    rejects = {r["location"]: r for r in read_jsonl(Path(ds.path) / "rejects.jsonl")}
    assert rejects["qa.jsonl:11"] == {"location": "qa.jsonl:11", "reason": "exact_duplicate", "duplicate_of": "qa.jsonl:4"}
    # the second duplicate differs only in case and surrounding spaces
    assert rejects["qa.jsonl:21"]["duplicate_of"] == "qa.jsonl:6"
    assert rejects["qa.jsonl:31"]["reason"] == "empty_or_short_response"
    assert rejects["qa.jsonl:41"]["reason"] == "empty_or_short_prompt"
    # examples are chat messages with the system prompt first
    row = load_split(ds.path, "train")[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == "You are the Acme Home support assistant. Answer briefly."
    assert row["id"].startswith(f"{CHAT_TASK}-")
    assert ds.counts == {"train": 43, "validation": 6, "test": 9}  # 58: test round(8.7), val round(5.8)


def test_classification_accounting(data_project_dir):
    ds = _prepare(data_project_dir, CLS_TASK)
    (src,) = ds.sources
    # conftest.ticket_rows: 90 unique, 2 duplicates, 1 empty text, 1 without label
    assert (src.read, src.kept, src.duplicates) == (94, 90, 2)
    assert src.rejected == {"empty_or_short_text": 1, "missing_label": 1}
    assert ds.labels == ["billing", "shipping", "tech_support"]
    _check_accounting(ds)
    row = load_split(ds.path, "train")[0]
    assert set(row) == {"text", "label", "id", "source"}
    subject, body = row["text"].split("\n\n")  # subject and body joined with a blank line
    assert subject and body
    manifest = json.loads((Path(ds.path) / "manifest.json").read_text())
    assert manifest["task_type"] == "classification"
    assert manifest["label_counts"]["test"] == {"billing": 4, "shipping": 4, "tech_support": 4}
    assert manifest["result"]["version"] == ds.version


def test_stratified_split_covers_every_class(data_project_dir):
    rows = [
        {"subject": f"s{i}", "body": f"{label} body {i}", "queue": label}
        for label, n in (("big", 40), ("mid", 9), ("three", 3), ("two", 2), ("one", 1))
        for i in range(n)
    ]
    write_csv(data_project_dir / "data" / "tickets.csv", rows)
    ds = _prepare(data_project_dir, CLS_TASK)
    _check_accounting(ds)
    per_split = {s: Counter(r["label"] for r in load_split(ds.path, s)) for s in SPLITS}
    for label in ("big", "mid", "three"):  # >= 3 rows: present in validation and test
        assert per_split["validation"][label] >= 1, label
        assert per_split["test"][label] >= 1, label
        assert per_split["train"][label] >= 1, label
    for label in ("two", "one"):  # too rare to hold out: all in training
        assert per_split["train"][label] == {"two": 2, "one": 1}[label]
        assert per_split["validation"][label] == per_split["test"][label] == 0
    assert per_split["test"]["big"] == 6  # round(40 * 0.15)
    assert per_split["validation"]["big"] == 4  # round(40 * 0.1)


def test_validation_zero_gives_empty_validation(data_project_dir):
    ds = _prepare(data_project_dir, CLS_TASK, [f"{CLS_TASK}:data.split.validation=0"])
    assert ds.counts["validation"] == 0
    assert ds.counts["test"] == 12 and ds.counts["train"] == 78


def test_two_sources_accounting_and_cross_source_duplicates(data_project_dir):
    extra = [
        {"question": "Is there a student discount?", "answer": "No, but we run sales in November."},
        {
            "question": "How do I reset the Doorbell Pro?",  # duplicate of a row in qa.jsonl
            "answer": "Hold the button on the Doorbell Pro for ten seconds until the light blinks blue.",
        },
        {"question": "Blank?", "answer": ""},
    ]
    write_csv(data_project_dir / "data" / "more.csv", extra)
    cfg = data_project_dir / "tuneloom.yaml"
    cfg.write_text(cfg.read_text().replace("- path: data/qa.jsonl", "- path: data/qa.jsonl\n        - path: data/more.csv"))
    ds = _prepare(data_project_dir, CHAT_TASK)
    assert [Path(s.path).name for s in ds.sources] == ["qa.jsonl", "more.csv"]
    more = ds.sources[1]
    assert (more.read, more.kept, more.duplicates) == (3, 1, 1)
    assert more.rejected == {"empty_or_short_response": 1}
    _check_accounting(ds)
    rejects = read_jsonl(Path(ds.path) / "rejects.jsonl")
    dup = next(r for r in rejects if r["location"] == "more.csv:row 2")
    assert dup["reason"] == "exact_duplicate" and dup["duplicate_of"].startswith("qa.jsonl:")


def test_rows_missing_a_column_later_in_a_jsonl_file(data_project_dir):
    rows = [{"question": f"Question number {i}?", "answer": f"Answer number {i}."} for i in range(10)]
    rows[6] = {"question": "Where is the answer?"}
    write_jsonl(data_project_dir / "data" / "qa.jsonl", rows)
    ds = _prepare(data_project_dir, CHAT_TASK)
    assert ds.sources[0].rejected == {"missing_columns": 1}
    _check_accounting(ds)


def test_json_null_fields_are_rejected_not_turned_into_none(data_project_dir):
    rows = [{"question": f"Question number {i}?", "answer": f"Answer number {i}."} for i in range(10)]
    rows[2] = {"question": "What is the answer?", "answer": None}
    rows[5] = {"question": None, "answer": "An answer without a question."}
    write_jsonl(data_project_dir / "data" / "qa.jsonl", rows)
    ds = _prepare(data_project_dir, CHAT_TASK)
    contents = [m["content"] for s in SPLITS for r in load_split(ds.path, s) for m in r["messages"]]
    assert "None" not in contents
    assert ds.sources[0].kept == 8
    assert ds.sources[0].rejected == {"empty_or_short_response": 1, "empty_or_short_prompt": 1}


def test_same_seed_same_split_and_reuse(data_project_dir, tmp_path):
    first = _prepare(data_project_dir, CLS_TASK)
    again = _prepare(data_project_dir, CLS_TASK)
    assert again.reused is True and first.reused is False
    assert again.version == first.version and again.path == first.path
    assert again.counts == first.counts and again.sources == first.sources
    # an independent copy of the project with the same data and seed splits identically
    copy = tmp_path / "copy"
    shutil.copytree(data_project_dir / "data", copy / "data")
    shutil.copy(data_project_dir / "tuneloom.yaml", copy / "tuneloom.yaml")
    other = _prepare(copy, CLS_TASK)
    assert other.reused is False and other.version == first.version
    for split in SPLITS:
        assert load_split(other.path, split) == load_split(first.path, split)
    assert _latest(Workspace(load_project(copy).workspace), CLS_TASK) == Path(other.path)


def test_other_seed_gives_new_version_and_split(data_project_dir):
    first = _prepare(data_project_dir, CLS_TASK)
    other = _prepare(data_project_dir, CLS_TASK, [f"{CLS_TASK}:data.split.seed=8"])
    assert other.version != first.version and other.reused is False
    assert {r["id"] for r in load_split(other.path, "test")} != {r["id"] for r in load_split(first.path, "test")}


def test_changed_data_file_gives_new_version(data_project_dir):
    first = _prepare(data_project_dir, CHAT_TASK)
    path = data_project_dir / "data" / "qa.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"question": "Do you sell gift cards?", "answer": "Yes, from £10 to £200."}) + "\n")
    second = _prepare(data_project_dir, CHAT_TASK)
    assert second.reused is False and second.version != first.version
    assert sum(second.counts.values()) == sum(first.counts.values()) + 1
    assert Path(first.path).is_dir() and Path(second.path).is_dir()  # old versions stay
    ws = Workspace(load_project(data_project_dir).workspace)
    assert _latest(ws, CHAT_TASK) == Path(second.path)
    # going back to a previous version's inputs reuses it and moves LATEST back
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    third = _prepare(data_project_dir, CHAT_TASK)
    assert third.reused is True and third.version == first.version
    assert _latest(ws, CHAT_TASK) == Path(first.path)


def test_no_temporary_folders_left(data_project_dir):
    ds = _prepare(data_project_dir, CHAT_TASK)
    siblings = [p.name for p in Path(ds.path).parent.iterdir()]
    assert sorted(siblings) == sorted([ds.version, "LATEST"])
    assert sorted(p.name for p in Path(ds.path).iterdir()) == sorted(
        ["train.jsonl", "validation.jsonl", "test.jsonl", "rejects.jsonl", "manifest.json", "report.html"]
    )


# ------------------------------------------------------------------------------------- errors


def test_missing_source_file(data_project_dir):
    (data_project_dir / "data" / "qa.jsonl").unlink()
    with pytest.raises(DataError) as info:
        _prepare(data_project_dir, CHAT_TASK)
    msg = str(info.value)
    assert "data source not found" in msg and "qa.jsonl" in msg
    assert "relative to the project file" in msg


def test_missing_mapped_column_did_you_mean(data_project_dir):
    ds = load_project(data_project_dir, [f"{CHAT_TASK}:data.columns.prompt=questoin"])
    with pytest.raises(DataError) as info:
        prepare_dataset(ds, CHAT_TASK)
    msg = str(info.value)
    assert "mapped column(s) 'questoin' (did you mean 'question'?) not found" in msg
    assert "['question', 'answer']" in msg
    assert "qa.jsonl" in msg


def test_missing_mapped_csv_column(data_project_dir):
    project = load_project(data_project_dir, [f"{CLS_TASK}:data.columns.label=queues"])
    with pytest.raises(DataError) as info:
        prepare_dataset(project, CLS_TASK)
    assert "'queues' (did you mean 'queue'?)" in str(info.value)
    assert "tickets.csv" in str(info.value)


def test_invalid_jsonl_line(data_project_dir):
    path = data_project_dir / "data" / "qa.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, '{"question": "broken", "answer": \n')
    path.write_text("".join(lines))
    with pytest.raises(DataError) as info:
        _prepare(data_project_dir, CHAT_TASK)
    msg = str(info.value)
    assert f"{path.resolve()}:3: invalid JSON" in msg
    assert "fix or remove that line" in msg


def test_jsonl_line_that_is_not_an_object(data_project_dir):
    path = data_project_dir / "data" / "qa.jsonl"
    path.write_text(path.read_text() + "[1, 2]\n")
    with pytest.raises(DataError, match=r"qa.jsonl:63: expected a JSON object per line, got list"):
        _prepare(data_project_dir, CHAT_TASK)


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_non_utf8_csv_is_detected(data_project_dir, encoding):
    rows = [f"Caf\u00e9 cr\u00e8me {i},Das Ger\u00e4t \u201ezeigt\u201c nichts an {i} \u20ac,billing" for i in range(12)]
    path = data_project_dir / "data" / "tickets.csv"
    path.write_bytes(("subject,body,queue\n" + "\n".join(rows) + "\n").encode(encoding))
    ds = _prepare(data_project_dir, CLS_TASK)
    texts = {r["text"] for s in SPLITS for r in load_split(ds.path, s)}
    assert "Caf\u00e9 cr\u00e8me 0\n\nDas Ger\u00e4t \u201ezeigt\u201c nichts an 0 \u20ac" in texts
    assert ds.sources[0].read == 12


def test_declared_wrong_encoding(data_project_dir):
    path = data_project_dir / "data" / "tickets.csv"
    path.write_bytes("subject,body,queue\nCaf\u00e9,cr\u00e8me,billing\n".encode("utf-16"))
    _set_source(data_project_dir, CLS_TASK, "data/tickets.csv", "\n          encoding: ascii")
    with pytest.raises(DataError, match=r"tickets.csv: cannot decode as ascii .*fix `encoding:`"):
        _prepare(data_project_dir, CLS_TASK)


def test_empty_file(data_project_dir):
    (data_project_dir / "data" / "tickets.csv").write_text("")
    with pytest.raises(DataError) as info:
        _prepare(data_project_dir, CLS_TASK)
    assert "tickets.csv is empty" in str(info.value)


def test_header_only_csv_has_no_usable_rows(data_project_dir):
    (data_project_dir / "data" / "tickets.csv").write_text("subject,body,queue\n")
    with pytest.raises(DataError, match="no usable rows"):
        _prepare(data_project_dir, CLS_TASK)


def test_all_rows_rejected(data_project_dir):
    write_jsonl(data_project_dir / "data" / "qa.jsonl", [{"question": "", "answer": ""}] * 3)
    with pytest.raises(DataError, match=f"task '{CHAT_TASK}': no usable rows"):
        _prepare(data_project_dir, CHAT_TASK)


def test_unknown_extension(data_project_dir):
    shutil.copy(data_project_dir / "data" / "tickets.csv", data_project_dir / "data" / "tickets.dat")
    _set_source(data_project_dir, CLS_TASK, "data/tickets.dat")
    with pytest.raises(DataError) as info:
        _prepare(data_project_dir, CLS_TASK)
    msg = str(info.value)
    assert "cannot tell the format from the extension '.dat'" in msg
    assert "set `format:`" in msg and "'csv'" in msg


def test_declared_format_overrides_extension(data_project_dir):
    shutil.copy(data_project_dir / "data" / "tickets.csv", data_project_dir / "data" / "tickets.txt")
    _set_source(data_project_dir, CLS_TASK, "data/tickets.txt", "\n          format: csv")
    ds = _prepare(data_project_dir, CLS_TASK)
    assert ds.sources[0].read == 94 and ds.sources[0].kept == 90


@pytest.mark.parametrize("fmt", ["tsv", "json", "parquet"])
def test_other_formats(data_project_dir, fmt):
    import pandas as pd

    rows = [{"question": f"Question {i} about the hub?", "answer": f"Answer {i}."} for i in range(12)]
    rows.append(dict(rows[0]))
    path = data_project_dir / "data" / f"qa.{fmt}"
    frame = pd.DataFrame(rows)
    if fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "json":
        path.write_text(json.dumps({"rows": rows}))  # an object holding the list
    else:
        frame.to_parquet(path)
    _set_source(data_project_dir, CHAT_TASK, f"data/qa.{fmt}")
    ds = _prepare(data_project_dir, CHAT_TASK)
    assert (ds.sources[0].read, ds.sources[0].kept, ds.sources[0].duplicates) == (13, 12, 1)
    _check_accounting(ds)


def test_json_that_is_not_a_list_of_objects(data_project_dir):
    (data_project_dir / "data" / "qa.json").write_text(json.dumps({"rows": [1, 2]}))
    _set_source(data_project_dir, CHAT_TASK, "data/qa.json")
    with pytest.raises(DataError, match="expected a JSON list of objects"):
        _prepare(data_project_dir, CHAT_TASK)


def test_too_long_rows_rejected(data_project_dir):
    ds = _prepare(data_project_dir, CHAT_TASK, [f"{CHAT_TASK}:data.max_chars=100"])
    assert ds.sources[0].rejected.get("too_long", 0) > 0
    _check_accounting(ds)
    for split in SPLITS:
        for row in load_split(ds.path, split):
            user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
            assert len(user) + len(answer) <= 100


def test_load_split_missing_file(tmp_path):
    with pytest.raises(DataError, match="run `tuneloom data prepare` again"):
        load_split(tmp_path, "train")


# ------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Cafe\u0301", "Caf\u00e9"),  # NFD -> NFC
        ("a\x00b\u200bc\ufeffd\x7f", "abcd"),  # control and zero-width characters removed
        ("  many   spaces\tand\u00a0nbsp  ", "many spaces and nbsp"),
        ("line one\r\nline two\rline three", "line one\nline two\nline three"),
        ("a\n\n\n\n\nb", "a\n\nb"),  # at most one blank line
        ("  a  \n   \n  b  ", "a\n\nb"),  # whitespace-only lines become blank
        ("\u3000ideographic\u2003space\u202f", "ideographic space"),
        (42, "42"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_keeps_tabs_out_and_newlines_in():
    text = normalize_text("first\tcell\nsecond")
    assert text == "first cell\nsecond"
    assert normalize_text(normalize_text("  x \u200b y ")) == normalize_text("  x \u200b y ") == "x y"


def test_dedup_key_ignores_case_and_spacing():
    assert dedup_key("Hello  World", "OK") == dedup_key("hello world", "ok")
    assert dedup_key("a", "b c") != dedup_key("a b", "c")  # parts stay separate
    assert dedup_key("Stra\u00dfe") == dedup_key("STRASSE")  # casefold, not lower
