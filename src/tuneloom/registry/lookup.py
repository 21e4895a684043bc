"""The production version of a project's task, if the registry has one."""

from __future__ import annotations

from tuneloom.config import Project, TaskConfig
from tuneloom.registry.client import ModelRegistry
from tuneloom.registry.errors import NotRegistered
from tuneloom.registry.lineage import ResolvedModel
from tuneloom.registry.refs import PRODUCTION


def registry_for(project: Project) -> ModelRegistry:
    return ModelRegistry(project.workspace, project.config.registry.uri)


def production_for(project: Project, task: TaskConfig) -> ResolvedModel | None:
    """The task's `production` version (name: task.registry_name or the task name), or None.

    Without a configured server and before anything was registered, MLflow is not even imported.
    """
    if project.config.registry.uri is None and not (project.workspace / "mlflow.db").is_file():
        return None
    registry = registry_for(project)
    name = task.registry_name or task.name
    try:
        if registry.production(name) is None:
            return None
    except NotRegistered:
        return None
    return registry.resolve(f"{name}@{PRODUCTION}")
