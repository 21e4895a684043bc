"""Every hostile file gets its exact outcome: a message naming the file (and line), or rejected rows with reasons.

Whatever happens, no traceback, and every row read is accounted for: read = kept + rejected + duplicates.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.hostile.corpus import CASES, Case
from tests.data_files import project
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.errors import DataError

SPLITS = ("train", "validation", "test")


def _project(root: Path, case: Case) -> Path:
    source = case.source.format(root=root.name)
    return project(
        root,
        case.task_type,
        "some/model",
        f"      sources: [{{path: '{source}'{case.source_extra}}}]\n      columns: {case.columns}\n      token_stats: false\n",
    )


def _rejects_named_in(message: str) -> list[dict]:
    path = Path(message.rsplit(": ", 1)[1].strip())
    assert path.name == "rejects.jsonl" and path.parent.name.startswith("rejected-"), message
    return read_jsonl(path)


def _check_failure(case: Case, root: Path) -> None:
    with pytest.raises(DataError) as info:
        prepare_dataset(load_project(root), "t")
    message = str(info.value)
    for part in case.message:
        assert part in message, f"{case.id}: {part!r} not in {message!r}"
    for part in case.absent:
        assert part not in message, f"{case.id}: {part!r} in {message!r}"
    assert len(message) < 2000, f"{case.id}: a {len(message)}-character message"
    if "rejects.jsonl" in case.message:
        rejected = _rejects_named_in(message)
        assert rejected and all(r["reason"] for r in rejected)


def _check_dataset(case: Case, root: Path) -> None:
    ds = prepare_dataset(load_project(root), "t")
    (src,) = ds.sources
    assert src.read == src.kept + sum(src.rejected.values()) + src.duplicates
    rejects = read_jsonl(Path(ds.path) / "rejects.jsonl")
    assert [(r["location"], r["reason"]) for r in rejects] == case.rejects
    assert src.kept == case.kept and src.duplicates == case.duplicates
    assert sum(ds.counts.values()) == src.kept
    if case.encoding:
        assert src.encoding == case.encoding
    rows = [r for s in SPLITS for r in load_split(ds.path, s)]
    texts = {r.get("text") for r in rows} | {m["content"] for r in rows for m in r.get("messages", [])}
    for text in case.texts:
        assert text in texts, f"{case.id}: {text!r} not in {texts}"
    if case.warning:
        assert any(case.warning in w for w in ds.warnings), ds.warnings
    else:
        assert not [w for w in ds.warnings if "encoding" in w], ds.warnings


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case: Case, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    case.build(root)
    _project(root, case)
    if case.fails:
        _check_failure(case, root)
    else:
        _check_dataset(case, root)


def test_corpus_size() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
