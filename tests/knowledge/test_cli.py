"""`tuneloom index build|update|search|stats` and the knowledge step of `tuneloom run` (tiny BERT embedder)."""

from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from tests.knowledge.helpers import kb_project, write_docs
from tuneloom.cli import app
from tuneloom.loop import _update_knowledge

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def test_index_commands(tmp_path, tiny_bert_dir):
    kb_project(tmp_path, embedder=str(tiny_bert_dir))
    write_docs(tmp_path / "docs")
    config = str(tmp_path / "tuneloom.yaml")
    built = _ok(runner.invoke(app, ["index", "build", "handbook", "-c", config, "--quiet"]))
    assert "handbook built: 6 documents" in built and "no text layer" in built and "empty file" in built
    found = _ok(runner.invoke(app, ["index", "search", "handbook", "salary reviews", "-c", config, "--json", "-k", "20"]))
    hits = json.loads(found)
    assert hits and {"chunk", "score", "dense_rank", "keyword_rank"} <= set(hits[0])
    public = _ok(runner.invoke(app, ["index", "search", "handbook", "salary", "-c", config, "--tag", "public", "--json"]))
    assert '"hr"' not in public
    stats = _ok(runner.invoke(app, ["index", "stats", "-c", config]))
    assert "handbook holds: 6 documents" in stats and "duplicate of docs/hr/salary-copy.txt" in stats
    (tmp_path / "docs" / "notes.txt").unlink()
    updated = _ok(runner.invoke(app, ["index", "update", "-c", config, "--quiet"]))
    assert "0 added, 0 changed, 1 removed, 5 unchanged" in updated


def test_index_errors_are_one_readable_line(tmp_path, tiny_bert_dir):
    kb_project(tmp_path, embedder=str(tiny_bert_dir))
    config = str(tmp_path / "tuneloom.yaml")
    for args, needle in [
        (["index", "search", "handbook", "x", "-c", config], "run `tuneloom index build handbook`"),
        (["index", "stats", "nope", "-c", config], "no knowledge base named 'nope'"),
        (["index", "search", "handbook", "x", "-c", config, "--where", "oops"], "--where takes KEY=VALUE"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output


def test_run_updates_knowledge_bases_before_training(tmp_path, tiny_bert_dir):
    project = kb_project(tmp_path, embedder=str(tiny_bert_dir))
    (tmp_path / "docs" / "a.md").write_text("# A\n\nThe first fact.\n")
    first, second = (_update_knowledge(project, Console(quiet=True)) for _ in range(2))
    assert (first[0].added, second[0].unchanged, second[0].embedded_chunks) == (1, 1, 0)
