"""What the console's pages show, read through `tuneloom.artifacts` and the registry API (no file parsing here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloom.artifacts import (
    ArtifactError,
    DatasetManifest,
    EvalResult,
    GateRecord,
    IndexState,
    RunSnapshot,
    TrainingSummary,
    read_eval,
    read_feedback_eval,
    read_gate,
    read_index_state,
    read_manifest,
    read_metrics,
    read_scout,
    read_snapshot,
    read_status,
    read_summary,
)
from tuneloom.config import Project
from tuneloom.workspace import run_state

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}$")  # "+": datasets with feedback (v+fb-...)


class NotFound(LookupError):
    """A run, dataset version or scout result the URL names but the workspace does not hold."""


def safe_child(parent: Path, name: str) -> Path:
    """`parent/name` for a URL segment that is a plain name (never a path), else NotFound."""
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise NotFound(name)
    path = parent / name
    if not path.is_dir():
        raise NotFound(name)
    return path


@dataclass
class RunView:
    """One run folder as the console shows it; missing files are None, unreadable ones are in `problems`."""

    name: str
    path: Path
    state: str
    snapshot: RunSnapshot | None = None
    summary: TrainingSummary | None = None
    eval: EvalResult | None = None
    feedback_eval: EvalResult | None = None  # scored on held-out feedback rows (`tuneloom iterate`)
    gate: GateRecord | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return str(self.snapshot.task.get("name", "")) if self.snapshot else self.name.rsplit("-", 2)[0]

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def _optional(view: RunView, file: str, reader: Any) -> Any:
    if not (view.path / file).is_file():
        return None
    try:
        return reader(view.path)
    except ArtifactError as exc:
        view.problems.append(str(exc))
        return None


def run_view(workspace: Path, name: str) -> RunView:
    path = safe_child(workspace / "runs", name)
    try:
        state = run_state(path)
    except ArtifactError as exc:
        state = "unreadable"
        problems = [str(exc)]
    else:
        problems = []
    view = RunView(name=name, path=path, state=state, problems=problems)
    view.snapshot = _optional(view, "config.yaml", read_snapshot)
    view.summary = _optional(view, "summary.json", read_summary)
    view.eval = _optional(view, "eval.json", read_eval)
    view.feedback_eval = _optional(view, "feedback_eval.json", read_feedback_eval)
    view.gate = _optional(view, "gate.json", read_gate)
    return view


def list_runs(workspace: Path) -> list[RunView]:
    """Every run folder, newest first."""
    runs = workspace / "runs"
    if not runs.is_dir():
        return []
    names = sorted((p.name for p in runs.iterdir() if p.is_dir() and _SAFE_NAME.match(p.name)), reverse=True)
    return [run_view(workspace, n) for n in names]


def runs_of_pid(workspace: Path, pid: int | None) -> list[RunView]:
    """The runs a job's process wrote (each run's status.json records its process id), oldest first."""
    runs = workspace / "runs"
    if pid is None or not runs.is_dir():
        return []
    out = []
    for path in sorted(runs.iterdir()):
        try:
            mine = (path / "status.json").is_file() and read_status(path).pid == pid
        except ArtifactError:
            continue
        if mine and _SAFE_NAME.match(path.name):
            out.append(run_view(workspace, path.name))
    return out


def curves(view: RunView) -> dict[str, list[tuple[float, float]]]:
    """Training and validation loss against the step."""
    out: dict[str, list[tuple[float, float]]] = {"loss": [], "eval_loss": []}
    for row in view.metrics():
        for key in out:
            if isinstance(row.get(key), int | float) and isinstance(row.get("step"), int | float):
                out[key].append((float(row["step"]), float(row[key])))
    return {k: v for k, v in out.items() if v}


@dataclass
class DatasetVersion:
    task: str
    version: str
    path: Path
    manifest: DatasetManifest | None
    latest: bool
    problem: str | None = None


def dataset_versions(project: Project) -> dict[str, list[DatasetVersion]]:
    """Each task's prepared dataset versions (the latest first)."""
    out: dict[str, list[DatasetVersion]] = {}
    for task in project.config.task_names():
        folder = project.workspace / "datasets" / task
        latest = (folder / "LATEST").read_text().strip() if (folder / "LATEST").is_file() else None
        versions = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_dir() and (path / "manifest.json").is_file():
                versions.append(dataset_version(project, task, path.name, latest))
        versions.sort(key=lambda v: not v.latest)
        out[task] = versions
    return out


def dataset_version(project: Project, task: str, version: str, latest: str | None = None) -> DatasetVersion:
    if task not in project.config.task_names():
        raise NotFound(task)
    path = safe_child(project.workspace / "datasets" / task, version)
    try:
        manifest, problem = read_manifest(path), None
    except ArtifactError as exc:
        manifest, problem = None, str(exc)
    return DatasetVersion(task, version, path, manifest, latest == version, problem)


@dataclass
class KnowledgeBaseView:
    name: str
    sources: list[str]
    state: IndexState | None  # None: not built yet
    problem: str | None = None


def knowledge_bases(project: Project) -> list[KnowledgeBaseView]:
    """Each configured knowledge base with its index state (read from knowledge/<name>/index.json)."""
    from tuneloom.knowledge.index import kb_dir

    out = []
    for kb in project.config.knowledge:
        view = KnowledgeBaseView(kb.name, [s.path for s in kb.sources], None)
        folder = kb_dir(project.workspace, kb.name)
        if (folder / "index.json").is_file():
            try:
                view.state = read_index_state(folder)
            except ArtifactError as exc:
                view.problem = str(exc)
        out.append(view)
    return out


def scout_results(workspace: Path) -> list[tuple[str, Any]]:
    """(folder name, ScoutResult or the ArtifactError that says why it is unreadable) of every scout, newest first."""
    folder = workspace / "scout"
    out = []
    for path in sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []:
        if (path / "scout.json").is_file():
            try:
                out.append((path.name, read_scout(path)))
            except ArtifactError as exc:
                out.append((path.name, exc))
    return out
