"""The documentation site builds in strict mode, and its generated references cover every model field."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from tests.conftest import REPO

ROW_KEY = re.compile(r"<tr>\s*<td><code>([^<]+)</code></td>")


def reachable_models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """`root` and every model its fields reach, through lists, mappings, unions and Annotated."""
    found: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.add(annotation)
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    visit(root)
    return found


def table_keys(html: str) -> list[set[str]]:
    """The first-column keys of every table on a page."""
    return [set(ROW_KEY.findall(body)) for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.DOTALL)]


def assert_documented(models: set[type[BaseModel]], html: str) -> None:
    tables = table_keys(html)
    missing = [m.__name__ for m in models if set(m.model_fields) not in tables]
    assert not missing, f"models without a complete field table: {sorted(missing)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_strict_build_has_every_page(site: Path) -> None:
    for page in [
        "quickstart",
        "scout",
        "data",
        "train",
        "evaluate",
        "registry",
        "serve",
        "project-file",
        "artifacts",
        "performance",
        "architecture",
        "adding-a-task-type",
        "limits",
    ]:
        assert (site / page / "index.html").is_file(), page
    assert not (site / "hooks").exists(), "the build hook must not be published"


def test_project_file_reference_has_every_key(site: Path) -> None:
    from tuneloom.config import ProjectConfig

    html = (site / "project-file" / "index.html").read_text()
    assert "generated:" not in html
    models = reachable_models(ProjectConfig)
    assert len(models) > 20
    assert_documented(models, html)
    for name in ProjectConfig.model_fields:
        assert f"<code>{name}</code>" in html


def test_artifact_reference_has_every_file_and_field(site: Path) -> None:
    from tuneloom.artifacts import artifact_models

    html = (site / "artifacts" / "index.html").read_text()
    files = artifact_models()
    for pattern, model in files.items():
        assert f"{model.__name__}" in html and pattern.replace("<", "&lt;").replace(">", "&gt;") in html
    models: set[type[BaseModel]] = set()
    for model in files.values():
        models |= reachable_models(model)
    assert_documented(models, html)


def test_readme_stays_short_and_keeps_the_ci_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 8000
    assert "make test" in readme and "make demo" in readme
    assert "## Architecture" in readme
