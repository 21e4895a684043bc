"""What one server holds: the project, its settings, the model backend, keys, feedback store and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tuneloom.config import Project, ServeConfig
from tuneloom.data.redact import Redactor, redactor_for
from tuneloom.serve.auth import KeyStore, keys_path
from tuneloom.serve.backends import make_backend
from tuneloom.serve.feedback import FeedbackStore
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import TargetResolver


@dataclass
class ServerState:
    """Kept on `app.state.tuneloom`; routes reach it through `dependencies.get_state`."""

    project: Project
    settings: ServeConfig
    resolver: TargetResolver
    backend: Any
    keys: KeyStore
    feedback: FeedbackStore
    metrics: ServeMetrics
    redactor: Redactor | None
    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)

    @property
    def accepting(self) -> bool:
        return self.ready and not self.draining


def build_state(project: Project, settings: ServeConfig) -> ServerState:
    """Everything a server needs, built once when the app is created."""
    metrics = ServeMetrics()
    redactor = redactor_for(settings.redact)
    return ServerState(
        project=project,
        settings=settings,
        resolver=TargetResolver(project, settings),
        backend=make_backend(settings, metrics),
        keys=KeyStore(keys_path(project.workspace)),
        feedback=FeedbackStore.for_workspace(project.workspace, settings.feedback_db),
        metrics=metrics,
        redactor=redactor,
    )
