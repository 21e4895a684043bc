"""Model registry: tuned runs become numbered model versions with lineage; one is `production`.

Backed by MLflow's model registry: a SQLite file in the workspace by default (no server, no
network), or a tracking server when a registry URI is configured. MLflow itself is imported only
when a function here is called, so importing this package is cheap.
"""

from tuneloom.registry.mlflow_registry import (
    PRODUCTION,
    HistoryEntry,
    ModelRegistry,
    ModelVersionInfo,
    RegistryError,
    ResolvedModel,
    history,
    list_versions,
    promote,
    register_run,
    resolve,
    rollback,
)

__all__ = [
    "PRODUCTION",
    "HistoryEntry",
    "ModelRegistry",
    "ModelVersionInfo",
    "RegistryError",
    "ResolvedModel",
    "history",
    "list_versions",
    "promote",
    "register_run",
    "resolve",
    "rollback",
]
