"""The registry as plain functions: one `ModelRegistry` per call (keep one for many calls)."""

from __future__ import annotations

from pathlib import Path

from tuneloom.registry.client import ModelRegistry
from tuneloom.registry.history import HistoryEntry
from tuneloom.registry.lineage import ModelVersionInfo, ResolvedModel


def register_run(run_dir: str | Path, name: str, workspace: str | Path, registry_uri: str | None = None) -> ModelVersionInfo:
    """Register a finished run's model/ as a new version of `name`."""
    return ModelRegistry(workspace, registry_uri).register_run(run_dir, name)


def promote(
    name: str,
    version: int | str,
    force: bool = False,
    reason: str | None = None,
    *,
    workspace: str | Path,
    registry_uri: str | None = None,
) -> HistoryEntry | None:
    """Set `production` to `version`; refuses a failed or missing gate unless force=True with a reason."""
    return ModelRegistry(workspace, registry_uri).promote(name, version, force, reason)


def rollback(name: str, reason: str | None = None, *, workspace: str | Path, registry_uri: str | None = None) -> HistoryEntry:
    """Move `production` back to the previous production version."""
    return ModelRegistry(workspace, registry_uri).rollback(name, reason)


def history(name: str, *, workspace: str | Path, registry_uri: str | None = None) -> list[HistoryEntry]:
    """Every change of `production`, oldest first."""
    return ModelRegistry(workspace, registry_uri).history(name)


def list_versions(name: str, *, workspace: str | Path, registry_uri: str | None = None) -> list[ModelVersionInfo]:
    """Every version of `name`, oldest first."""
    return ModelRegistry(workspace, registry_uri).list_versions(name)


def resolve(ref: str, *, workspace: str | Path, registry_uri: str | None = None) -> ResolvedModel:
    """`name`, `name:VERSION` or `name@ALIAS` -> the version's local model folder and lineage."""
    return ModelRegistry(workspace, registry_uri).resolve(ref)
