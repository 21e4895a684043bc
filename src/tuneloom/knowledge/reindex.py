"""Re-index a knowledge base with a tuned embedder: what promoting an `embedding` task's version does.

The index then records the registry version it was built with (`IndexMeta.embedder`, e.g. `handbook-search:3`)
and the embedder's content hash, so `open_index` refuses to search it with any other embedder.
"""

from __future__ import annotations

from pathlib import Path

from tuneloom.artifacts import IndexStats, read_embedder_card
from tuneloom.config import Project
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.index import build_index, store_for


def resolve_embedder(project: Project, ref: str) -> tuple[Path, str]:
    """(model folder, reference to record) for a registry `name:VERSION`, `name@ALIAS` or `name` (production)."""
    from tuneloom.registry.lookup import registry_for

    resolved = registry_for(project).resolve(ref)
    return Path(resolved.path), f"{resolved.name}:{resolved.version}"


def with_embedder(project: Project, kb_name: str, model: str) -> Project:
    """The project with knowledge base `kb_name`'s embedder set to `model` (the project file is not changed)."""
    bases = []
    for kb in project.config.knowledge:
        if kb.name == kb_name:
            kb = kb.model_copy(update={"embedder": kb.embedder.model_copy(update={"model": model})})
        bases.append(kb)
    return project.model_copy(update={"config": project.config.model_copy(update={"knowledge": bases})})


def reindex_with(project: Project, kb_name: str, embedder_ref: str, *, progress: bool = True) -> IndexStats:
    """Rebuild knowledge base `kb_name`'s index with the registered embedder `embedder_ref`, recording the version.

    Search it afterwards with that embedder: set the knowledge base's `embedder.model` to the version's folder
    (`tuneloom.registry.resolve(ref).path`); an index opened with another embedder is refused, naming the version.
    """
    project.config.knowledge_base(kb_name)  # an unknown name is refused with the known ones
    folder, recorded = resolve_embedder(project, embedder_ref)
    if not (folder / "modules.json").is_file():
        raise TuneloomError(f"{recorded} ({folder}) is not a sentence-transformers embedder: register an embedding task's run")
    tuned_for = read_embedder_card(folder).knowledge_base
    if tuned_for != kb_name:
        raise TuneloomError(f"{recorded} was tuned for knowledge base '{tuned_for}', not '{kb_name}'")
    swapped = with_embedder(project, kb_name, str(folder))
    stats = build_index(swapped, kb_name, progress=progress)
    store = store_for(swapped.config.knowledge_base(kb_name), project.workspace)
    try:
        meta = store.meta()
        if meta is None:
            raise TuneloomError(
                f"knowledge base '{kb_name}': the rebuilt index has no metadata; run `tuneloom index build {kb_name}`"
            )
        store.set_meta(meta.model_copy(update={"embedder": recorded}))
    finally:
        store.close()
    return stats
