"""What a run folder contributes to a registered version, and what a registered version tells.

A finished run (its snapshot, summary, evaluation and gate, read through `tuneloom.artifacts`)
becomes lineage tags, params and metrics; an MLflow model version becomes a `ModelVersionInfo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from tuneloom.artifacts import EvalResult, GateRecord, RunSnapshot, read_eval, read_gate, read_snapshot
from tuneloom.registry.errors import RegistryError
from tuneloom.registry.params import run_metrics, run_params
from tuneloom.registry.refs import PRODUCTION

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

LINEAGE_TAGS = (
    "project",
    "task",
    "task_type",
    "method",
    "base_model",
    "base_model_path",
    "dataset_version",
    "dataset_path",
    "run_dir",
    "gate",
    "baseline",
)
_MAX_TAG = 5000  # well under MLflow's limit on a model registry tag value


class ModelVersionInfo(BaseModel):
    """One registered version: where it came from and where it stands."""

    name: str
    version: int
    run_id: str | None
    source: str
    created: str  # ISO time, UTC
    aliases: list[str]
    gate: str | None  # passed | failed | None (no gate result)
    lineage: dict[str, str]
    tags: dict[str, str]

    @property
    def is_production(self) -> bool:
        return PRODUCTION in self.aliases


class ResolvedModel(ModelVersionInfo):
    """A version plus the local folder holding its model/ artifacts (treat it as read-only)."""

    path: Path


def version_info(mv: ModelVersion, aliases: list[str] | None = None) -> ModelVersionInfo:
    """An MLflow model version as Tuneloom shows it (`aliases` when MLflow's search left them out)."""
    tags = dict(mv.tags or {})
    return ModelVersionInfo(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or None,
        source=mv.source or "",
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((mv.creation_timestamp or 0) / 1000)),
        aliases=sorted(mv.aliases or aliases or []),
        gate=tags.get("gate"),
        lineage={k: tags[k] for k in LINEAGE_TAGS if k in tags},
        tags=tags,
    )


@dataclass(frozen=True)
class RunLineage:
    """A finished run folder as the registry records it."""

    run_dir: Path
    snapshot: RunSnapshot
    eval: EvalResult | None
    gate: GateRecord | None

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def tags(self) -> dict[str, str]:
        """Lineage tags of the model version: base model, dataset, run folder, task, gate result."""
        task, dataset = self.snapshot.task, self.snapshot.dataset
        tags = {
            "project": self.snapshot.project,
            "task": task.get("name"),
            "task_type": task.get("type"),
            "method": (task.get("method") or {}).get("kind"),
            "base_model": task.get("model"),
            "base_model_path": self.snapshot.base_model_path,
            "dataset_version": dataset.version,
            "dataset_path": dataset.path,
            "run_dir": str(self.run_dir),
            "baseline": self.snapshot.baseline,  # a shipped cheap baseline (`tuneloom ship-baseline`), not a tuned model
        }
        if self.gate is not None:
            tags["gate"] = "passed" if self.gate.passed else "failed"
            failed = [r.detail or r.rule for r in self.gate.rules if not r.passed]
            if failed:
                tags["gate_failures"] = "; ".join(failed)
        return {k: str(v)[:_MAX_TAG] for k, v in tags.items() if v is not None}

    def params(self) -> dict[str, str]:
        return run_params(self.snapshot.model_dump(mode="json"))

    def metrics(self) -> dict[str, float]:
        """The tuned side's numeric scores."""
        return run_metrics(self.eval.tuned) if self.eval is not None else {}


def read_lineage(run_dir: str | Path) -> RunLineage:
    """A finished run folder with a model/ to register; a RegistryError says what is missing."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.yaml").is_file():
        raise RegistryError(f"{run_dir} is not a Tuneloom run folder (no config.yaml)")
    if not (run_dir / "summary.json").is_file():  # written last: its presence marks a finished run
        raise RegistryError(
            f"{run_dir} did not finish (no summary.json; see its status.json): only completed runs can be registered"
        )
    model_dir = run_dir / "model"
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise RegistryError(f"{run_dir} has no model/ folder to register")
    return RunLineage(
        run_dir=run_dir,
        snapshot=read_snapshot(run_dir),
        eval=read_eval(run_dir) if (run_dir / "eval.json").is_file() else None,
        gate=read_gate(run_dir) if (run_dir / "gate.json").is_file() else None,
    )
