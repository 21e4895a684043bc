"""Property: any CSV or JSONL rows (random Unicode, quoting, types) end as a dataset or a DataError, never a traceback,
and every row read is accounted for (read = kept + rejected + duplicates)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.data_files import project
from tuneloom.atomic import read_jsonl
from tuneloom.config import load_project
from tuneloom.data import prepare_dataset
from tuneloom.errors import DataError

CELL = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(['"', '""', ",", "\n", "\r\n", ";", "\t", "\\", "[1, 2]", '{"a": 1}', "\u202e", "\x00", "   "]),
)
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(categories=("Cs", "Cf", "Lu")), max_size=4),  # lone surrogates, bidi controls
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ROWS = st.lists(st.tuples(CELL, st.sampled_from(["billing", "shipping", "", "x"])), min_size=1, max_size=12)
JSON_ROWS = st.lists(st.fixed_dictionaries({"body": JSON_VALUE, "queue": JSON_VALUE}), min_size=1, max_size=12)
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _prepare(write) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = write(root)
        project(
            root,
            "classification",
            "some/model",
            f"      sources: [{{path: {source}}}]\n      columns: {{text: body, label: queue}}\n      token_stats: false\n",
        )
        try:
            ds = prepare_dataset(load_project(root), "t")
        except DataError as exc:
            assert str(exc) and len(str(exc)) < 5000
            return
        (src,) = ds.sources
        assert src.read == src.kept + sum(src.rejected.values()) + src.duplicates
        assert len(read_jsonl(Path(ds.path) / "rejects.jsonl")) == src.read - src.kept
        assert sum(ds.counts.values()) == src.kept


@PROPERTY
@given(ROWS, st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
def test_generated_csv_rows(rows: list[tuple[str, str]], quoting: int) -> None:
    def write(root: Path) -> str:
        out = io.StringIO()
        writer = csv.writer(out, quoting=quoting)
        writer.writerow(["body", "queue"])
        writer.writerows(rows)
        (root / "t.csv").write_text(out.getvalue(), encoding="utf-8", newline="")
        return "t.csv"

    _prepare(write)


@PROPERTY
@given(JSON_ROWS, st.booleans())
def test_generated_jsonl_rows(rows: list[dict], ascii_only: bool) -> None:
    def write(root: Path) -> str:
        lines = [json.dumps(r, ensure_ascii=ascii_only) for r in rows]
        (root / "t.jsonl").write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
        return "t.jsonl"

    _prepare(write)
