"""Broken and dangerous project files: each gets a message naming the file, the place and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.test_project_file import BASE
from tuneloom.config import load_project, parse_project
from tuneloom.errors import DataError, ProjectFileError


def _project(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "tuneloom.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _yaml_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ProjectFileError) as info:
        load_project(_project(tmp_path / "p", text))
    return str(info.value)


def test_yaml_tab_names_the_file_and_says_use_spaces(tmp_path):
    msg = _yaml_error(tmp_path, BASE.replace("    train:\n", "\ttrain:\n"))
    assert f'in "{tmp_path / "p" / "tuneloom.yaml"}", line 10' in msg and "<unicode string>" not in msg
    assert "use spaces, not tabs" in msg


def test_yaml_unquoted_colon_suggests_quoting(tmp_path):
    msg = _yaml_error(tmp_path, "project: a: b\ntasks: []\n")
    assert "tuneloom.yaml" in msg and "line 1" in msg and "must be quoted" in msg


@pytest.mark.parametrize("workspace", ["/", "'~'"])
def test_workspace_root_or_home_is_refused(tmp_path, monkeypatch, workspace):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    raw = workspace.strip("'")
    text = f"workspace: {str(tmp_path / 'home') if raw == '~' else raw}\nallow_workspace_outside_project: true\n" + BASE
    project = load_project(_project(tmp_path / "p", text))
    with pytest.raises(ProjectFileError) as info:
        _ = project.workspace
    assert ("file system root" if raw == "/" else "your home folder") in str(info.value)
    assert "workspace: workspace" in str(info.value)


def test_workspace_outside_the_project_needs_permission(tmp_path):
    project = load_project(_project(tmp_path / "p", "workspace: ../elsewhere\n" + BASE))
    with pytest.raises(ProjectFileError) as info:
        _ = project.workspace
    assert "workspace: ../elsewhere" in str(info.value) and "allow_workspace_outside_project: true" in str(info.value)
    allowed = load_project(_project(tmp_path / "p", "workspace: ../elsewhere\nallow_workspace_outside_project: true\n" + BASE))
    assert allowed.workspace == (tmp_path / "elsewhere").resolve()


def test_source_settings_for_links_and_outside_paths_default_off():
    source = parse_project(BASE).task("router").data.sources[0]
    assert source.allow_symlinks is False and source.allow_outside_project is False


def test_source_through_a_linked_folder_names_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "tickets.csv").write_text("subject,body,queue\na,b,c\n")
    path = _project(tmp_path / "p", BASE.replace("path: tickets.csv", "path: data/tickets.csv"))
    (tmp_path / "p" / "data").symlink_to(tmp_path / "real")
    project = load_project(path)
    with pytest.raises(DataError) as info:
        project.source_path(project.config.task("router").data.sources[0])
    assert f"{tmp_path / 'p' / 'data'} is a symbolic link" in str(info.value)
    assert str(tmp_path / "real") + " " not in str(info.value)


def test_huge_batch_size_is_refused():
    with pytest.raises(ProjectFileError) as info:
        parse_project(BASE.replace("epochs: 2", "epochs: 2\n      batch_size: 1000000000000"), "demo.yaml")
    msg = str(info.value)
    assert "tasks[0].train.batch_size" in msg or "batch_size" in msg
    assert "65536" in msg


def test_batch_larger_than_the_training_split_is_cut_to_it(tmp_path):
    from tuneloom.train.common import training_kwargs

    task = parse_project(BASE.replace("epochs: 2", "epochs: 2\n      batch_size: 1000")).task("router")
    kwargs = training_kwargs(task, tmp_path, n_train=30, precision="fp32")
    assert kwargs["per_device_train_batch_size"] == 30 and kwargs["per_device_eval_batch_size"] == 30
