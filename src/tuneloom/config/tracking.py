"""The `registry` and `tracking` sections: where model versions and training runs are recorded (MLflow)."""

from __future__ import annotations

from pydantic import Field

from tuneloom.config.base import Strict


class RegistryConfig(Strict):
    """Where model versions are registered (MLflow model registry)."""

    uri: str | None = Field(
        None, description="MLflow tracking server URL; default: a SQLite registry file in the workspace (no network)."
    )


class TrackingConfig(Strict):
    """Every training run's params, metrics and artifacts go to MLflow (besides metrics.jsonl)."""

    mlflow: bool = Field(True, description="Log training runs to MLflow.")
    uri: str | None = Field(
        None,
        description="MLflow tracking server URL or database URI; default: registry.uri, else SQLite in the workspace (no network).",
    )
    log_model: bool = Field(True, description="Also log the run's model/ folder (adapter or weights) as an artifact.")
