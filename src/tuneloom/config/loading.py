"""Reading a project file: YAML, validation with readable errors, then `--set` overrides."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from tuneloom.config.messages import format_validation_error
from tuneloom.config.overrides import apply_overrides
from tuneloom.config.project import Project, ProjectConfig
from tuneloom.errors import ProjectFileError


def parse_project(text: str, source: str = "<project file>") -> ProjectConfig:
    """Validate project-file text; `source` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProjectFileError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProjectFileError(f"{source} must be a YAML mapping with keys 'project', 'workspace' and 'tasks'")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ProjectFileError(format_validation_error(err, source, node, ProjectConfig)) from None


def load_project(path: str | Path = "tuneloom.yaml", overrides: list[str] | None = None) -> Project:
    """Read and validate a project file; `overrides` are `key.path=value` strings (see `apply_overrides`)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tuneloom.yaml"
    if not p.is_file():
        raise ProjectFileError(f"project file not found: {p}. Create one with `tuneloom init` or pass --config PATH.")
    config = parse_project(p.read_text(encoding="utf-8"), str(p))
    if overrides:
        config = apply_overrides(config, overrides)
    return Project(config=config, path=p.resolve())
