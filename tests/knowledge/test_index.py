"""Build, search, update and the bad-input cases of a knowledge base on the packaged MiniLM."""

from __future__ import annotations

import pytest

from tests.knowledge.helpers import kb_project, write_docs
from tuneloom.knowledge import EmbedderMismatch, Filter, build_index, index_stats, open_index, update_index


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("kb")
    project = kb_project(root)
    write_docs(root / "docs")
    stats = build_index(project, "handbook", progress=False)
    return project, stats


def _reasons(stats):
    return {s.doc_id: s.reason for s in stats.skipped}


def test_build_indexes_every_format_and_lists_what_it_skipped(built):
    project, stats = built
    reasons = _reasons(stats)
    assert reasons["docs/public/empty.md"] == "empty file"
    assert reasons["docs/hr/salary.txt"] == "duplicate of docs/hr/salary-copy.txt"
    assert reasons["docs/public/scan.pdf"].startswith("no text layer")
    assert "over max_document_mb" in reasons["docs/public/huge.txt"]
    assert stats.documents == 6 and stats.added == 6 and stats.chunks >= 7
    assert stats.tokens > 50 and stats.content_version
    assert index_stats(project, "handbook").documents == 6


def test_search_finds_the_passage_and_keeps_structure(built):
    index = open_index(built[0], "handbook")
    hits = index.search("how many days do I have to return an item?", k=3)
    top = hits[0].chunk
    assert top.doc_id == "docs/public/returns.md" and top.section == ["Returns", "Policy"]
    assert hits[0].dense_rank is not None and hits[0].score > hits[-1].score
    assert index.search("crème brûlée")[0].chunk.doc_id == "docs/public/cafe.txt"  # cp1252 read correctly
    assert index.search("train trips")[0].chunk.doc_id == "docs/public/travel.html"
    assert "menu" not in index.search("train trips")[0].chunk.text  # navigation dropped
    assert index.embed(["a", "b"]).shape == (2, 384)


def test_access_tags_and_metadata_filters(built):
    index = open_index(built[0], "handbook")
    query = "when are salary reviews?"
    assert index.search(query, k=1)[0].chunk.tags == ["hr"]
    public = index.search(query, k=50, flt=Filter(allowed_tags=frozenset({"public"})))
    assert public and all(h.chunk.tags in (["public"], []) for h in public)
    assert "docs/notes.txt" in {h.chunk.doc_id for h in public}  # untagged chunks are visible to everyone
    nobody = index.search(query, k=50, flt=Filter(allowed_tags=frozenset()))
    assert {h.chunk.doc_id for h in nobody} == {"docs/notes.txt"}
    docx = index.search(query, k=50, flt=Filter(where={"format": "docx"}))
    assert [h.chunk.doc_id for h in docx] == ["docs/public/laptops.docx"]


def test_over_long_query_is_cut_with_a_note(built):
    index = open_index(built[0], "handbook")
    hits = index.search("return policy " * 400)
    assert hits and "only the first" in index.notes[0]


def test_update_embeds_only_changes_and_removes_deleted_documents(tmp_path):
    project = kb_project(tmp_path, max_document_mb=1)
    docs = tmp_path / "docs"
    write_docs(docs)
    (docs / "public" / "huge.txt").unlink()
    first = build_index(project, "handbook", progress=False)
    same = update_index(project, "handbook", progress=False)
    assert same.embedded_chunks == 0 and same.unchanged == first.documents and same.content_version == first.content_version
    (docs / "public" / "travel.html").unlink()
    (docs / "public" / "returns.md").write_text("# Returns\n\nReturns are accepted for 60 days.\n")
    (docs / "public" / "parking.md").write_text("Parking is free for cyclists.\n")
    (docs / "hr" / "salary-copy.txt").unlink()  # its duplicate now stands alone and is indexed
    stats = update_index(project, "handbook", progress=False)
    assert (stats.added, stats.changed, stats.removed) == (2, 1, 2)
    assert stats.embedded_chunks == 3 and stats.documents == first.documents
    index = open_index(project, "handbook")
    ids = {c.doc_id for c in index.chunks()}
    assert "docs/public/travel.html" not in ids and {"docs/public/parking.md", "docs/hr/salary.txt"} <= ids
    assert "60 days" in index.search("return window", k=1)[0].chunk.text
    assert [c.doc_id for c, _ in index.store.keyword_search("cyclists", 5, Filter())] == ["docs/public/parking.md"]
    assert index.store.keyword_search("trains", 5, Filter()) == []  # the deleted page's words are gone too
    assert index.meta.content_version == stats.content_version != first.content_version


def test_an_interrupted_build_resumes(tmp_path, monkeypatch):
    from tuneloom.knowledge import writer

    project = kb_project(tmp_path)
    for i in range(6):
        (tmp_path / "docs" / f"doc{i}.md").write_text(f"# Doc {i}\n\nFact number {i}: the code is {i * 7}.\n")
    monkeypatch.setattr(writer, "BATCH_CHUNKS", 2)
    monkeypatch.setattr(writer, "SAVE_EVERY_S", 0.0)
    calls = {"n": 0}
    real = writer.IndexWriter._flush

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(writer.IndexWriter, "_flush", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_index(project, "handbook", progress=False)
    assert any("were being written" in w for w in index_stats(project, "handbook").warnings)
    monkeypatch.setattr(writer.IndexWriter, "_flush", real)
    stats = update_index(project, "handbook", progress=False)
    assert stats.documents == 6 and stats.embedded_chunks == 4  # the first batch (2 documents) was kept
    index = open_index(project, "handbook")
    assert sorted(c.doc_id for c in index.chunks()) == [f"docs/doc{i}.md" for i in range(6)]
    assert index_stats(project, "handbook").warnings == []


def test_another_embedder_is_refused_until_rebuilt(tmp_path, tiny_bert_dir):
    project = kb_project(tmp_path)
    (tmp_path / "docs" / "a.md").write_text("Anything at all.\n")
    build_index(project, "handbook", progress=False)
    project.config.knowledge[0].embedder.model = str(tiny_bert_dir)
    with pytest.raises(EmbedderMismatch, match=r"tuneloom index build handbook"):
        open_index(project, "handbook")
    stats = update_index(project, "handbook", progress=False)  # an embedder change rebuilds
    assert stats.embedded_chunks == 1
    assert open_index(project, "handbook").meta.dim == 32


def _four_docs(docs):
    for i in range(4):
        (docs / f"doc{i}.md").write_text(f"# Doc {i}\n\nFact number {i}: the code is {i * 7}.\n")


def _tables(project):
    import lancedb

    return sorted(lancedb.connect(str(project.workspace / "knowledge" / "handbook" / "lance")).list_tables().tables)


def test_a_rebuild_switches_tables_at_the_end_so_readers_never_see_an_empty_index(tmp_path, monkeypatch):
    from tuneloom.knowledge import writer

    project = kb_project(tmp_path)
    _four_docs(tmp_path / "docs")
    build_index(project, "handbook", progress=False)
    before = open_index(project, "handbook")
    monkeypatch.setattr(writer, "BATCH_CHUNKS", 1)
    seen = []
    real = writer.IndexWriter._flush

    def checking(self):
        real(self)
        fresh = open_index(project, "handbook")  # what a server reopening mid-rebuild would get
        seen.append((before.store.count(), fresh.store.count(), fresh.search("code of Doc 3", k=1)[0].chunk.text))

    monkeypatch.setattr(writer.IndexWriter, "_flush", checking)
    (tmp_path / "docs" / "doc3.md").write_text("# Doc 3\n\nFact number 3: the code is 99.\n")
    update_index(project, "handbook", progress=False, reembed=True)
    assert len(seen) == 5 and all(s[:2] == (4, 4) and "code is 21" in s[2] for s in seen)  # the old index throughout
    after = open_index(project, "handbook")
    assert after.store.count() == 4 and "code is 99" in after.search("code of Doc 3", k=1)[0].chunk.text
    assert after.meta.table.startswith("chunks-") and before.meta.table == ""  # "": the first build's default table
    assert _tables(project) == [after.meta.table]  # the replaced table is gone


def test_an_interrupted_rebuild_keeps_the_old_index_and_its_leftover_table_goes(tmp_path, monkeypatch):
    from tuneloom.knowledge import writer

    project = kb_project(tmp_path)
    _four_docs(tmp_path / "docs")
    build_index(project, "handbook", progress=False)
    monkeypatch.setattr(writer, "BATCH_CHUNKS", 1)
    real = writer.IndexWriter._flush
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(writer.IndexWriter, "_flush", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_index(project, "handbook", progress=False)
    assert len(_tables(project)) == 2  # the old table and the unfinished new one
    assert open_index(project, "handbook").store.count() == 4
    monkeypatch.setattr(writer.IndexWriter, "_flush", real)
    update_index(project, "handbook", progress=False)
    index = open_index(project, "handbook")
    assert index.store.count() == 4 and _tables(project) == ["chunks"]  # the resume finished in the current table
