"""The `knowledge:` section: readable refusals of settings that cannot work."""

from __future__ import annotations

import pytest

from tests.knowledge.helpers import kb_project
from tuneloom.errors import ModelNotAvailable, ProjectFileError
from tuneloom.knowledge import build_index


@pytest.mark.parametrize(
    "section, needle",
    [
        ({"chunking": {"max_tokens": 100, "overlap": 50}}, "overlap (50) must be under half of max_tokens (100)"),
        ({"store": {"kind": "pgvector"}}, "set store.url"),
        ({"retrieval": {"dense_weight": 0, "keyword_weight": 0}}, "at least one a positive weight"),
        ({"name": "../escape"}, "names a workspace folder"),
        ({"chunk": {}}, "chunk"),
    ],
)
def test_bad_settings_are_refused_with_the_field(tmp_path, section, needle):
    with pytest.raises(ProjectFileError, match="knowledge") as err:
        kb_project(tmp_path, **section)
    assert needle in str(err.value)


def test_unknown_and_repeated_names(tmp_path):
    project = kb_project(tmp_path)
    with pytest.raises(ProjectFileError, match=r"no knowledge base named 'handbok'.*handbook"):
        project.config.knowledge_base("handbok")
    with pytest.raises(ValueError, match="knowledge base names must be unique"):
        project.config.model_validate({**project.config.model_dump(), "knowledge": [project.config.knowledge[0]] * 2})


def test_chunks_longer_than_the_embedder_window_are_refused(tmp_path, tiny_bert_dir):
    project = kb_project(tmp_path, embedder=str(tiny_bert_dir), chunking={"max_tokens": 4000, "overlap": 0})
    with pytest.raises(ProjectFileError, match=r"chunking.max_tokens \(4000\) is over the embedder's window"):
        build_index(project, "handbook", progress=False)


def test_a_hub_embedder_that_was_never_pulled_says_how_to_get_it(tmp_path):
    project = kb_project(tmp_path, embedder="someorg/some-embedder")
    with pytest.raises(ModelNotAvailable, match="tuneloom models pull someorg/some-embedder"):
        build_index(project, "handbook", progress=False)
