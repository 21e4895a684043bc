"""Where a project may read and write: source paths and the workspace, confined to the project folder.

A source path that is (or passes through) a symbolic link, or that leads outside the folder
holding the project file, is refused unless the source allows it (`allow_symlinks`,
`allow_outside_project`); the error names the link as written, not its target. A workspace is
never the file system root or the home folder, and lies inside the project folder unless the
project file sets `allow_workspace_outside_project: true`.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuneloom.errors import DataError, ProjectFileError


def first_symlink(path: Path, below: Path) -> Path | None:
    """The first component of `path` under `below` that is a symbolic link (`path` itself when outside `below`)."""
    try:
        parts = path.relative_to(below).parts
    except ValueError:
        return path if path.is_symlink() else None
    current = below
    for part in parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def checked_source_path(root: Path, raw: str, allow_symlinks: bool, allow_outside: bool) -> Path:
    """The resolved path of a source written as `raw` in the project file at `root`, after the checks above."""
    written = Path(os.path.abspath(root / raw))  # '..' removed as written, links not followed yet
    resolved = written.resolve()
    if not allow_symlinks:
        link = first_symlink(written, root)
        if link is not None:
            raise DataError(
                f"data source {raw}: {link} is a symbolic link; Tuneloom does not follow links into training data. "
                f"Copy the file into the project, or set `allow_symlinks: true` on the source if you trust it."
            )
    if not allow_outside and not inside(resolved, root.resolve()):
        raise DataError(
            f"data source {raw}: {written} is outside the project folder {root}; move the data into the project, "
            f"or set `allow_outside_project: true` on the source if reading it is intended."
        )
    return resolved


def checked_workspace(root: Path, raw: str, allow_outside: bool) -> Path:
    """The resolved workspace folder written as `raw` in the project file at `root`."""
    resolved = (root / raw).resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home:
        where = "the file system root" if resolved == Path(resolved.anchor) else "your home folder"
        raise ProjectFileError(
            f"workspace: {raw} is {where} ({resolved}); Tuneloom writes datasets/, runs/ and reports/ there. "
            f"Use a folder of its own, e.g. `workspace: workspace`."
        )
    if not allow_outside and not inside(resolved, root.resolve()):
        raise ProjectFileError(
            f"workspace: {raw} ({resolved}) is outside the project folder {root}; use a folder inside it, "
            f"or set `allow_workspace_outside_project: true` if writing there is intended."
        )
    return resolved
