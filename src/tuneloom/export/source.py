"""What to export: a run folder, or a registry version (`name`, `name:VERSION`, `name@ALIAS`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneloom.errors import TuneloomError


@dataclass(frozen=True)
class ExportSource:
    """The model folder (full weights or an adapter), its base, and the registry version if any."""

    ref: str
    model_dir: Path
    base_dir: Path
    label: str
    registry_name: str | None = None
    registry_version: int | None = None


def _from_run(run_dir: Path) -> ExportSource:
    from tuneloom.artifacts import read_snapshot

    if not (run_dir / "config.yaml").is_file():
        raise TuneloomError(f"{run_dir} is not a Tuneloom run folder (no config.yaml); give a run folder or a registry reference")
    if not (run_dir / "model").is_dir():
        raise TuneloomError(f"{run_dir} has no model/ folder: the run did not finish training")
    snapshot = read_snapshot(run_dir)
    return ExportSource(str(run_dir), run_dir / "model", Path(snapshot.base_model_path), run_dir.name)


def _from_registry(ref: str, workspace: Path, registry_uri: str | None) -> ExportSource:
    from tuneloom.registry import ModelRegistry

    resolved = ModelRegistry(workspace, registry_uri).resolve(ref)
    base = resolved.lineage.get("base_model_path")
    if not base:
        raise TuneloomError(f"{resolved.name} version {resolved.version} has no base_model_path tag; re-register its run")
    return ExportSource(ref, resolved.path, Path(base), f"{resolved.name}-v{resolved.version}", resolved.name, resolved.version)


def resolve_source(ref: str, workspace: Path | None, registry_uri: str | None = None) -> ExportSource:
    """A run folder path, or a registry reference looked up in `workspace`'s registry."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return _from_run(path.resolve())
    if workspace is None:
        raise TuneloomError(f"{ref!r} is not a run folder; to export a registry version, give the project file (-c)")
    source = _from_registry(ref, workspace, registry_uri)
    if not source.base_dir.is_dir():
        raise TuneloomError(f"the base model folder {source.base_dir} of {ref} is missing on this machine")
    return source
