"""The on-disk layout of a project's workspace, and atomic writes.

    workspace/
      datasets/<task>/<content-hash>/   train/validation/test.jsonl, rejects.jsonl, manifest.json
      runs/<run-id>/                    config.yaml, status.json, metrics.jsonl, train.log,
                                        model/ (adapter or weights), eval.json, summary.json
      reports/<report-id>/report.html   the loop report with its plots

A run's status.json says `running`, `failed` (with the error) or `completed`; summary.json is
written last, so a run folder without it is visibly unfinished.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tuneloom.artifacts import RunSnapshot, read_status, write_snapshot, write_status
from tuneloom.atomic import write_text_atomic

_RUN_NAME = re.compile(r"^(.+)-(\d{8}-\d{6})(?:-(\d+))?$")


def _run_order(run: Path) -> tuple[str, int]:
    match = _RUN_NAME.match(run.name)
    assert match is not None
    return match.group(2), int(match.group(3) or 1)


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def dataset_dir(self, task: str, version: str) -> Path:
        return self.root / "datasets" / task / version

    def set_latest_dataset(self, task: str, version: str) -> None:
        write_text_atomic(self.root / "datasets" / task / "LATEST", version + "\n")

    def new_run(self, task: str, snapshot: RunSnapshot) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = self.root / "runs" / f"{task}-{stamp}"
        run, n = base, 1
        while run.exists():
            n += 1
            run = base.with_name(f"{base.name}-{n}")
        run.mkdir(parents=True)
        write_snapshot(run, snapshot)
        set_status(run, "running")
        return run

    def run_dir(self, ref: str) -> Path:
        """A run by id, by path, or 'latest' / 'latest:<task>'."""
        path = Path(ref)
        if path.is_dir() and (path / "config.yaml").is_file():
            return path
        runs = self.root / "runs"
        if ref.startswith("latest"):
            task = ref.partition(":")[2]
            found = sorted(
                (p for p, name in self._runs() if (not task or name == task) and (p / "summary.json").is_file()),
                key=_run_order,
            )
            if not found:
                raise FileNotFoundError(f"no completed run{' of ' + task if task else ''} in {runs}")
            return found[-1]
        if (runs / ref).is_dir():
            return runs / ref
        raise FileNotFoundError(f"no run '{ref}' in {runs}; `ls {runs}` lists the runs")

    def _runs(self) -> list[tuple[Path, str]]:
        """(folder, task name) of every run folder; the name encodes task and start time."""
        out = []
        for p in (self.root / "runs").glob("*"):
            match = _RUN_NAME.match(p.name)
            if match and p.is_dir():
                out.append((p, match.group(1)))
        return out

    def report_dir(self, name: str) -> Path:
        return self.root / "reports" / name


def locate_run(ref: str, project_file: Path) -> tuple[Path, Workspace]:
    """(run folder, workspace) for a run folder path, or for an id / 'latest[:TASK]' in the project's workspace."""
    if Path(ref).is_dir():  # a run folder needs no project file: runs/<id> sits in the workspace
        run_dir = Path(ref).resolve()
        return run_dir, Workspace(run_dir.parent.parent)
    from tuneloom.config import load_project  # config does not import this module: no cycle

    ws = Workspace(load_project(project_file).workspace)
    return ws.run_dir(ref).resolve(), ws


def set_status(run: Path, state: str, **extra: Any) -> None:
    write_status(run, state, pid=os.getpid(), **extra)


def run_state(run: Path) -> str:
    """completed, failed, interrupted, running; a 'running' run whose process is gone was interrupted."""
    if not (run / "status.json").is_file():
        return "interrupted"
    status = read_status(run)
    if status.state != "running":
        return status.state
    if status.pid is None:
        return "interrupted"
    try:
        os.kill(status.pid, 0)
    except OSError:
        return "interrupted"
    return "running"


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one line and flush it: metrics survive a crash up to the last complete line."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
