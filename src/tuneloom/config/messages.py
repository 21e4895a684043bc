"""Readable project-file errors: the field path, its YAML line, the bad value and what is allowed."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


def did_you_mean(word: str, choices: list[str]) -> str:
    """' (did you mean 'X'?)' for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names allowed at `path` (the parent of an unknown key)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        current = _first_model(ann)
        if current is None:
            return []
    return list(current.model_fields)


def _first_model(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside a (possibly nested or optional) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _yaml_line(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `path` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]  # a key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    """A field path as written in the file: `tasks[0].train.lr`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str, node: yaml.Node | None, model: type[BaseModel]) -> str:
    """One line per error of validating `source` against `model`: where (field path and YAML line) and what is wrong."""
    lines = [f"{source} is not a valid Tuneloom project file:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line = _yaml_line(node, loc)
        where = f"{_format_loc(loc)}" + (f" (line {line})" if line else "")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = did_you_mean(str(loc[-1]), allowed)
            msg = f"unknown key{hint}; allowed keys here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if "input" in e and not isinstance(e["input"], (dict, list)):
                msg = f"{e['input']!r}: {msg}"
        lines.append(f"  - {where}: {msg}")
    lines.append("Fix the fields above; `tuneloom config schema` prints every allowed key.")
    return "\n".join(lines)
