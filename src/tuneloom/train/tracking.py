"""Run tracking: every training run's params, metrics and artifacts in MLflow.

Uses the registry's MLflow setup (`ModelRegistry`): SQLite and artifacts in the workspace by
default, so nothing reaches the network; `tracking.uri` (else `registry.uri`) points at a tracking
server. transformers ships an `MLflowCallback`, but it is configured through environment variables
and the process-global `mlflow` module state; this one writes through an explicit client to the
store the project names, and buffers metrics so tracking costs the training loop nothing noticeable.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneloom.config import Project
from tuneloom.registry.client import EXPERIMENT_PREFIX, ModelRegistry
from tuneloom.registry.mlflow_setup import mlflow_errors
from tuneloom.registry.params import run_params

log = logging.getLogger(__name__)
ARTIFACTS = ("config.yaml", "metrics.jsonl", "summary.json", "report.html")
_FLUSH_EVERY = 50  # metric values buffered between writes (always flushed at evaluations and at the end)


class MlflowTracker(TrainerCallback):
    """Streams a run's log lines to an MLflow run created (with its params) before training starts."""

    def __init__(self, registry: ModelRegistry, run_dir: Path, snapshot: dict[str, Any], log_model: bool = True) -> None:
        self.registry = registry
        self.run_dir = run_dir
        self.log_model = log_model
        self.buffer: list[Any] = []
        self.run_id = ""
        self.run_id = self._create(snapshot)

    @mlflow_errors
    def _create(self, snapshot: dict[str, Any]) -> str:
        from mlflow.entities import Param

        experiment = f"{EXPERIMENT_PREFIX}/{snapshot.get('project') or 'default'}"
        run = self.registry.client.create_run(
            self.registry.experiment_id(experiment),
            run_name=self.run_dir.name,
            tags={"tuneloom.run_dir": str(self.run_dir), "tuneloom.task": snapshot["task"]["name"]},
        )
        params = [Param(k, v) for k, v in run_params(snapshot).items()]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
            self.registry.client.log_batch(run.info.run_id, params=params[i : i + 100])
        return run.info.run_id

    @property
    def display_uri(self) -> str:  # named as in ModelRegistry: `mlflow_errors` puts it in messages
        return self.registry.display_uri

    def on_log(self, args, state, control, logs=None, **kwargs):  # Trainer callback API
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.buffer.append(Metric(re.sub(r"[^\w./ -]", "_", key)[:250], float(value), now, state.global_step))
        if len(self.buffer) >= _FLUSH_EVERY:
            self.flush()

    def on_evaluate(self, args, state, control, **kwargs):
        self.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()

    def flush(self) -> None:
        """Write buffered metrics; a tracking hiccup is logged, never allowed to stop training."""
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        try:
            for i in range(0, len(batch), 1000):
                self.registry.client.log_batch(self.run_id, metrics=batch[i : i + 1000])
        except Exception as exc:  # the run folder's metrics.jsonl still has every value
            log.warning("MLflow tracking: could not log %d metric values: %s", len(batch), exc)

    @mlflow_errors
    def finish(self, status: str) -> None:
        """Flush, log the run folder's artifacts that exist, and close the MLflow run with `status`."""
        self.flush()
        client = self.registry.client
        if status == "FINISHED":
            for name in ARTIFACTS:
                if (self.run_dir / name).is_file():
                    client.log_artifact(self.run_id, str(self.run_dir / name), artifact_path="run")
            if self.log_model and (self.run_dir / "model").is_dir():
                client.log_artifacts(self.run_id, str(self.run_dir / "model"), artifact_path="model")
        client.set_terminated(self.run_id, status=status)


def start_tracking(project: Project, run_dir: Path, snapshot: dict[str, Any]) -> MlflowTracker | None:
    """An MLflow tracker for a new run, or None when `tracking.mlflow` is off."""
    tracking = project.config.tracking
    if not tracking.mlflow:
        return None
    registry = ModelRegistry(project.workspace, tracking.uri or project.config.registry.uri)
    return MlflowTracker(registry, run_dir, snapshot, tracking.log_model)
