"""The whole project file (`ProjectConfig`) and a loaded project (`Project`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneloom.config.base import Strict
from tuneloom.config.data import SourceConfig
from tuneloom.config.knowledge import KnowledgeConfig
from tuneloom.config.loop import CanaryConfig
from tuneloom.config.messages import did_you_mean
from tuneloom.config.paths import checked_source_path, checked_workspace
from tuneloom.config.scout import ScoutConfig
from tuneloom.config.serve import ServeConfig
from tuneloom.config.task import TaskConfig
from tuneloom.config.tracking import RegistryConfig, TrackingConfig
from tuneloom.errors import ProjectFileError


class ProjectConfig(Strict):
    """A Tuneloom project: where outputs go and the tasks to tune."""

    project: str = Field(description="Project name, shown in reports.")
    workspace: str = Field("workspace", description="Output folder, relative to the project file.")
    allow_workspace_outside_project: bool = Field(
        False, description="Allow a workspace outside the project folder (never the file system root or home folder)."
    )
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    serve: ServeConfig = ServeConfig()
    scout: ScoutConfig = ScoutConfig()
    canary: CanaryConfig = CanaryConfig()
    tasks: list[TaskConfig] = Field(min_length=1)
    knowledge: list[KnowledgeConfig] = Field(
        default_factory=list, description="Knowledge bases: documents indexed for retrieval (`tuneloom index`)."
    )

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique; repeated: {dupes}")
        return tasks

    @field_validator("knowledge")
    @classmethod
    def _unique_knowledge(cls, bases: list[KnowledgeConfig]) -> list[KnowledgeConfig]:
        names = [k.name for k in bases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"knowledge base names must be unique; repeated: {dupes}")
        return bases

    @model_validator(mode="after")
    def _scout_tasks(self) -> ProjectConfig:
        unknown = sorted(set(self.scout.tasks) - set(self.task_names()))
        if unknown:
            raise ValueError(f"scout.tasks: no task named {unknown}; tasks: {self.task_names()}")
        return self

    @model_validator(mode="after")
    def _task_knowledge(self) -> ProjectConfig:
        names = [k.name for k in self.knowledge]
        for t in self.tasks:
            if t.knowledge is not None and t.knowledge not in names:
                known = f"knowledge bases: {names}" if names else "the project file has no `knowledge:` section"
                raise ValueError(f"tasks[{t.name}].knowledge: no knowledge base named '{t.knowledge}'; {known}")
        return self

    def task(self, name: str | None) -> TaskConfig:
        if name is None:
            if len(self.tasks) == 1:
                return self.tasks[0]
            raise ProjectFileError(f"this project has several tasks; choose one with --task: {self.task_names()}")
        for t in self.tasks:
            if t.name == name:
                return t
        hint = did_you_mean(name, self.task_names())
        raise ProjectFileError(f"no task named '{name}'{hint}; tasks: {self.task_names()}")

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def knowledge_base(self, name: str) -> KnowledgeConfig:
        """The knowledge base called `name`; an unknown name is refused with the known ones."""
        names = [k.name for k in self.knowledge]
        for kb in self.knowledge:
            if kb.name == name:
                return kb
        if not names:
            raise ProjectFileError(f"no knowledge base named '{name}': the project file has no `knowledge:` section")
        raise ProjectFileError(f"no knowledge base named '{name}'{did_you_mean(name, names)}; knowledge bases: {names}")


class Project(BaseModel):
    """A loaded project file: the validated config plus where it lives."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: ProjectConfig
    path: Path

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def workspace(self) -> Path:
        """The workspace folder; refused when it is the root, the home folder, or outside the project (unless allowed)."""
        return checked_workspace(self.root, self.config.workspace, self.config.allow_workspace_outside_project)

    def source_path(self, source: SourceConfig) -> Path:
        """A source's resolved path; refused through a symbolic link or outside the project unless the source allows it."""
        return checked_source_path(self.root, source.path, source.allow_symlinks, source.allow_outside_project)


def project_schema() -> dict[str, Any]:
    """The JSON schema of the project file (`tuneloom config schema`)."""
    return ProjectConfig.model_json_schema()
