"""MkDocs hook: the project-file and artifact references, generated from the pydantic models.

A page line `<!-- generated: project-file -->` becomes one table of keys per section of the
project file (`tuneloom.config.ProjectConfig`, walked through every nested model); a line
`<!-- generated: artifacts -->` becomes one table of fields per workspace file
(`tuneloom.artifacts.artifact_models()`) and per model nested in them. A key added to a model is
therefore in the docs at the next build; an unknown marker fails the build.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
CONSTRAINTS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "min length", "max_length": "max length"}
MAX_DEFAULT_CHARS = 60


def nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """Models inside an annotation, with the path suffix a list (`[]`) or mapping (`.<key>`) adds."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield suffix, annotation
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from nested_models(args[0], suffix)
    elif origin in (list, tuple, set):
        for arg in args:
            yield from nested_models(arg, suffix + "[]")
    elif origin is dict and args:
        yield from nested_models(args[1], suffix + ".<key>")
    else:
        for arg in args:
            yield from nested_models(arg, suffix)


def constraints(metadata: list[Any]) -> list[str]:
    """`> 0`, `min length 1`, `pattern ...` from pydantic / annotated_types metadata."""
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found += constraints(item.metadata)
            continue
        for attr, word in CONSTRAINTS.items():
            if getattr(item, attr, None) is not None:
                found.append(f"{word} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            found.append(f"pattern `{item.pattern}`")
    return found


def type_text(annotation: Any, link: Callable[[type[BaseModel]], str]) -> str:
    """A readable type: `str`, `list[SourceConfig]` (linked), `'a' | 'b'`, `int (> 0) | null`."""
    if annotation is type(None) or annotation is None:
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return link(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        limits = constraints(list(args[1:]))
        inner = type_text(args[0], link)
        return f"{inner} ({', '.join(limits)})" if limits else inner
    if origin is Literal:
        return " | ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a, link) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a, link) for a in args)}]"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_text(info: FieldInfo) -> str:
    """The default as YAML would spell it, `required`, or a note for nested sections."""
    if info.default_factory is not None:
        if not isinstance(info.default_factory, type):
            return "computed when written"
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "**required**"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "see its section"
    text = json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > MAX_DEFAULT_CHARS:
        text = text[: MAX_DEFAULT_CHARS - 1] + "…"
    return f"`{text}`"


def prose(text: str, table: bool = False) -> str:
    """Docstring or description text as Markdown: `<`, `>` (and in a table `|`) escaped outside code spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
        if table:
            parts[i] = parts[i].replace("|", r"\|")
    return "`".join(parts)


def cell(text: str) -> str:
    """Table-cell text: one line, escaped."""
    return prose(" ".join(text.split()), table=True)


def field_table(model: type[BaseModel], link: Callable[[type[BaseModel]], str]) -> list[str]:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        typ = type_text(info.annotation, link)
        limits = constraints(info.metadata)
        if limits:
            typ += f" ({', '.join(limits)})"
        row = [f"`{name}`", typ, default_text(info), info.description or ""]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return lines


def own_doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not a base class's), one Markdown paragraph per paragraph."""
    doc = model.__dict__.get("__doc__") or ""
    paragraphs = re.split(r"\n\s*\n", doc.strip())
    return "\n\n".join(prose(" ".join(p.split())) for p in paragraphs if p.strip())


def walk(root: type[BaseModel], path: str) -> dict[type[BaseModel], list[str]]:
    """Every model under `root` (depth first, in field order) -> the paths it appears at."""
    found: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], at: str) -> None:
        if model in found:
            found[model].append(at)
            return
        found[model] = [at]
        for name, info in model.model_fields.items():
            for suffix, child in nested_models(info.annotation):
                visit(child, f"{at}.{name}{suffix}" if at else f"{name}{suffix}")

    visit(root, path)
    return found


Title = Callable[[type[BaseModel], list[str]], str]


def render_sections(sections: dict[type[BaseModel], list[str]], title: Title, anchor_of: Title) -> str:
    """One heading, docstring and field table per model; model types link to their heading."""
    anchors = {model: anchor_of(model, paths) for model, paths in sections.items()}

    def link(model: type[BaseModel]) -> str:
        return f"[{model.__name__}](#{anchors[model]})" if model in anchors else model.__name__

    out: list[str] = []
    for model, paths in sections.items():
        out += [f"### {title(model, paths)} {{#{anchors[model]}}}", ""]
        if doc := own_doc(model):
            out += [doc, ""]
        out += field_table(model, link) + [""]
    return "\n".join(out)


def project_file_markdown() -> str:
    """Every section of the project file with its keys."""
    from tuneloom.config import ProjectConfig

    def title(model: type[BaseModel], paths: list[str]) -> str:
        return ", ".join(f"`{p}`" for p in paths) if paths[0] else "Top level"

    def anchor_of(model: type[BaseModel], paths: list[str]) -> str:
        return "key-" + (re.sub(r"[^a-z0-9]+", "-", paths[0].lower()).strip("-") or "top")

    return render_sections(walk(ProjectConfig, ""), title, anchor_of)


def artifacts_markdown() -> str:
    """Every workspace file's model, then the models nested in them."""
    from tuneloom.artifacts import artifact_models

    files = artifact_models()
    sections: dict[type[BaseModel], list[str]] = {model: [pattern] for pattern, model in files.items()}
    for pattern, model in files.items():
        for found, paths in walk(model, "").items():
            if found not in files.values():
                sections.setdefault(found, []).extend(f"`{p}` in `{pattern}`" for p in paths)

    def title(model: type[BaseModel], paths: list[str]) -> str:
        if model in files.values():
            return f"`{paths[0]}`: {model.__name__}"
        return f"{model.__name__} ({'; '.join(paths)})"

    def anchor_of(model: type[BaseModel], paths: list[str]) -> str:
        return "artifact-" + model.__name__.lower()

    return render_sections(sections, title, anchor_of)


GENERATORS: dict[str, Callable[[], str]] = {"project-file": project_file_markdown, "artifacts": artifacts_markdown}


def on_config(config: Any) -> Any:
    """Document this checkout's sources, whichever copy of tuneloom is installed."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            from mkdocs.exceptions import PluginError

            raise PluginError(f"{page.file.src_path}: unknown generated section '{name}'; known: {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
