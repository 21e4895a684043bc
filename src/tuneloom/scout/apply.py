"""`--apply`: write the recommended model into the project file, changing only that value.

The edit replaces the exact characters of the task's `model:` value (located with PyYAML's node
marks), so comments, order and formatting of the rest of the file stay as they were; ruamel.yaml
would do the same at the cost of a dependency for one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tuneloom.atomic import write_text_atomic
from tuneloom.config import parse_project
from tuneloom.errors import ProjectFileError

_PLAIN = re.compile(r"^[A-Za-z0-9_./~-][A-Za-z0-9_./~@+-]*$")


def _value_node(root: yaml.Node, task_name: str) -> yaml.ScalarNode:
    tasks = next((v for k, v in root.value if k.value == "tasks"), None) if isinstance(root, yaml.MappingNode) else None
    for item in tasks.value if isinstance(tasks, yaml.SequenceNode) else []:
        fields = {k.value: v for k, v in item.value} if isinstance(item, yaml.MappingNode) else {}
        name = fields.get("name")
        if name is not None and name.value == task_name and isinstance(fields.get("model"), yaml.ScalarNode):
            return fields["model"]
    raise ProjectFileError(f"cannot find `model:` of task '{task_name}' in the project file to apply the scout's choice")


def apply_model(project_file: Path, task_name: str, model: str) -> bool:
    """Set task `task_name`'s model to `model` in the file; False when it already was."""
    text = project_file.read_text(encoding="utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise ProjectFileError(f"{project_file} is empty: cannot apply the scout's choice")
    node = _value_node(root, task_name)
    if node.value == model:
        return False
    value = model if _PLAIN.match(model) else json.dumps(model)
    start, end = node.start_mark.index, node.end_mark.index
    new_text = text[:start] + value + text[end:]
    parse_project(new_text, str(project_file))  # never write a file that no longer loads
    write_text_atomic(project_file, new_text)
    return True
