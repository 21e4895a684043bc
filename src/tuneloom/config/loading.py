"""Reading a project file: YAML, validation with readable errors, then `--set` overrides."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from pydantic import ValidationError

from tuneloom.config.messages import format_validation_error
from tuneloom.config.overrides import apply_overrides
from tuneloom.config.project import Project, ProjectConfig
from tuneloom.errors import ProjectFileError


def _named(text: str, source: str) -> io.StringIO:
    """The text as a stream named `source`, so that YAML errors name the file instead of '<unicode string>'."""
    stream = io.StringIO(text)
    stream.name = source
    return stream


def _yaml_hint(exc: yaml.YAMLError) -> str:
    """What to do about the commonest YAML mistakes."""
    message = str(exc)
    if "'\\t'" in message:
        return "\nHint: YAML indentation must use spaces, not tabs; replace the tabs with spaces."
    if "mapping values are not allowed" in message:
        return "\nHint: a value containing ': ' must be quoted, or a key is indented wrongly."
    if "could not find expected ':'" in message or "expected <block end>" in message:
        return "\nHint: check the indentation of this line against the lines above it (use spaces)."
    return ""


def parse_project(text: str, source: str = "<project file>") -> ProjectConfig:
    """Validate project-file text; `source` names it in error messages."""
    try:
        node = yaml.compose(_named(text, source), Loader=yaml.SafeLoader)
        data = yaml.safe_load(_named(text, source))
    except yaml.YAMLError as exc:
        raise ProjectFileError(f"{source} is not valid YAML: {exc}{_yaml_hint(exc)}") from None
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
