"""Data preparation under hostile conditions: unreadable files, private file modes, encodings in the manifest,
rejects kept when nothing survives."""

from __future__ import annotations

import builtins
import json
import os
import stat
from pathlib import Path

import pytest

from tests.data.hostile.corpus import CAFE, good_rows
from tests.data_files import project, write_table
from tuneloom.artifacts import read_manifest
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.data import prepare_dataset
from tuneloom.data.clean import normalize_text
from tuneloom.errors import DataError


def _cls(root: Path, source: str) -> Path:
    return project(
        root,
        "classification",
        "some/model",
        f"      sources: [{{path: {source}}}]\n      columns: {{text: body, label: queue}}\n      token_stats: false\n",
    )


def test_unreadable_file_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    write_table(tmp_path / "t.csv", good_rows())
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file).endswith("t.csv"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(DataError) as info:
        prepare_dataset(load_project(_cls(tmp_path, "t.csv")), "t")
    assert "t.csv: cannot read the file (Permission denied); check its permissions" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode (the test above patches open)")
def test_unreadable_file_for_a_normal_user(tmp_path):
    write_table(tmp_path / "t.csv", good_rows())
    (tmp_path / "t.csv").chmod(0)
    with pytest.raises(DataError) as info:
        prepare_dataset(load_project(_cls(tmp_path, "t.csv")), "t")
    assert "Permission denied" in str(info.value)


def test_dataset_files_are_private(tmp_path):
    write_table(tmp_path / "t.csv", good_rows())
    ds = prepare_dataset(load_project(_cls(tmp_path, "t.csv")), "t")
    folder = Path(ds.path)
    for path in [folder, folder.parent, folder.parent.parent, *folder.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_manifest_records_the_encoding_of_each_source(tmp_path):
    (tmp_path / "a.csv").write_bytes(f"body,queue\n{CAFE},billing\n".encode("cp1252"))
    write_table(tmp_path / "b.csv", good_rows())
    write_table(tmp_path / "c.parquet", [{"body": "parquet row one two three", "queue": "billing"}])
    project(
        tmp_path,
        "classification",
        "some/model",
        "      sources: [{path: a.csv}, {path: b.csv}, {path: c.parquet}]\n      columns: {text: body, label: queue}\n"
        "      token_stats: false\n",
    )
    ds = prepare_dataset(load_project(tmp_path), "t")
    assert [s.encoding for s in read_manifest(Path(ds.path)).result.sources] == ["cp1252", "utf-8", None]
    assert not ds.warnings or not any("encoding" in w for w in ds.warnings)


def test_every_row_rejected_lists_reasons_and_keeps_the_rejects(tmp_path):
    rows = [{"body": "", "queue": "billing"}, {"body": "text", "queue": ""}, {"body": ["x"], "queue": "billing"}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as info:
        prepare_dataset(load_project(_cls(tmp_path, "t.jsonl")), "t")
    msg = str(info.value)
    assert "see the reasons above" not in msg
    assert "t.jsonl: read 3; rejected: " in msg
    for reason in ("empty_or_short_text (1)", "missing_label (1)", "not_text (1)"):
        assert reason in msg
    rejects = tmp_path / "ws" / "datasets" / "t"
    (folder,) = rejects.glob("rejected-*")
    assert str(folder / "rejects.jsonl") in msg
    assert {r["location"]: r["reason"] for r in read_jsonl(folder / "rejects.jsonl")} == {
        "t.jsonl:1": "empty_or_short_text",
        "t.jsonl:2": "missing_label",
        "t.jsonl:3": "not_text",
    }
    assert stat.S_IMODE((folder / "rejects.jsonl").stat().st_mode) == 0o600


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_bidi_controls_are_stripped(char):
    assert normalize_text(f"abc{char}def") == "abcdef"
