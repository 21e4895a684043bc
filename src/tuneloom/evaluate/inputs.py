"""What an evaluation compares: the registry's production version of the run's task, and the test data."""

from __future__ import annotations

from pathlib import Path

from tuneloom.artifacts import manifest_path, read_snapshot
from tuneloom.config import Project, load_project
from tuneloom.errors import TuneloomError
from tuneloom.registry import ResolvedModel
from tuneloom.registry.lookup import production_for


def find_production(run_dir: str | Path, project: Project | None = None) -> ResolvedModel | None:
    """The registry's `production` version of the run's task, or None when there is none.

    The registry is `project`'s; without one, that of the project file the run was trained from
    (recorded in its snapshot), when that file still exists. A project without the run's task has
    no production version for it.
    """
    snapshot = read_snapshot(run_dir)
    if project is None:
        project_file = Path(snapshot.project_file)
        if not project_file.is_file():
            return None
        project = load_project(project_file)
    name = snapshot.task["name"]
    if name not in project.config.task_names():
        return None
    return production_for(project, project.config.task(name))


def resolve_test_data(test_data: str | Path | None, production: ResolvedModel | None) -> str | None:
    """The prepared dataset folder whose test split to use: `test_data` itself, or for 'production' the
    production version's dataset; None (the run's own test split) when not given."""
    if test_data is None:
        return None
    if str(test_data) == "production":
        if production is None:
            raise TuneloomError("--test-data production: this task has no production version in the registry")
        test_data = production.lineage["dataset_path"]
    if not manifest_path(test_data).is_file():
        raise TuneloomError(f"--test-data {test_data}: not a prepared dataset folder (no manifest.json)")
    return str(test_data)
