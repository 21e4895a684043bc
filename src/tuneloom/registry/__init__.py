"""Model registry: tuned runs become numbered model versions with lineage; one is `production`.

Backed by MLflow's model registry: a SQLite file in the workspace by default (no server, no
network), or a tracking server when a registry URI is configured. MLflow itself is imported only
when a function here is called, so importing this package is cheap.

    client.py        ModelRegistry: read, resolve, register, promote, roll back
    api.py           the same as plain functions (one registry per call)
    lineage.py       what a run folder contributes; ModelVersionInfo, ResolvedModel
    history.py       HistoryEntry; promote, rollback and canary records and rules
    refs.py          model names and `name:VERSION` / `name@ALIAS` references
    params.py        run params and metrics for MLflow
    uris.py          URIs without credentials
    mlflow_setup.py  importing MLflow (once, thread-safe), its errors as RegistryError
    lookup.py        a project task's production version
"""

from tuneloom.registry.api import history, list_versions, promote, register_run, resolve, rollback
from tuneloom.registry.client import ModelRegistry
from tuneloom.registry.errors import NotRegistered, RegistryError, VersionNotFound
from tuneloom.registry.history import HistoryEntry
from tuneloom.registry.lineage import ModelVersionInfo, ResolvedModel
from tuneloom.registry.refs import CANARY, PRODUCTION

__all__ = [
    "CANARY",
    "PRODUCTION",
    "HistoryEntry",
    "ModelRegistry",
    "ModelVersionInfo",
    "NotRegistered",
    "RegistryError",
    "ResolvedModel",
    "VersionNotFound",
    "history",
    "list_versions",
    "promote",
    "register_run",
    "resolve",
    "rollback",
]
