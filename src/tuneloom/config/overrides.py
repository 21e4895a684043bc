"""`--set key.path=value` overrides of a validated project."""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from tuneloom.config.messages import format_validation_error
from tuneloom.config.project import ProjectConfig
from tuneloom.errors import ProjectFileError


def apply_overrides(config: ProjectConfig, overrides: list[str]) -> ProjectConfig:
    """Apply `train.lr=1e-4` style overrides to every task, or `TASK:train.lr=1e-4` to one task."""
    data = config.model_dump(mode="json")
    for item in overrides:
        if "=" not in item:
            raise ProjectFileError(f"override '{item}' must look like key.path=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        task_name, _, dotted = key.rpartition(":")
        value = yaml.safe_load(raw)
        targets = [t for t in data["tasks"] if not task_name or t["name"] == task_name]
        if not targets:
            raise ProjectFileError(f"override '{item}': no task named '{task_name}'")
        for task in targets:
            node = task
            parts = dotted.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ProjectFileError(f"override '{item}': '{part}' is not a section of a task")
                node = node[part]
            node[parts[-1]] = value
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ProjectFileError(format_validation_error(err, "--set overrides", None, ProjectConfig)) from None
