"""What one server holds: the project, its settings, the model backend, keys, feedback store and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tuneloom.config import Project, ServeConfig
from tuneloom.data.redact import Redactor, redactor_for
from tuneloom.serve.auth import KeyStore, keys_path
from tuneloom.serve.backends import TransformersBackend, import_model_libraries, make_backend
from tuneloom.serve.canary import CanaryRouter
from tuneloom.serve.feedback import FeedbackStore
from tuneloom.serve.knowledge import KnowledgeService, open_for
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import TargetResolver

log = logging.getLogger("tuneloom.serve")


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
    knowledge: KnowledgeService
    ready: bool = False
    draining: bool = False
    started: float = field(default_factory=time.time)
    failed: dict[str, str] = field(default_factory=dict)  # dependency -> why it did not load (then /ready is 503)
    router: CanaryRouter | None = None  # None: no canary routing

    @property
    def accepting(self) -> bool:
        return self.ready and not self.draining


def build_state(project: Project, settings: ServeConfig) -> ServerState:
    """Everything a server needs, built once when the app is created."""
    metrics = ServeMetrics()
    redactor = redactor_for(settings.redact)
    resolver = TargetResolver(project, settings)
    for name in configured_knowledge(settings):
        project.config.knowledge_base(name)  # an unknown name stops the start, naming the known ones
    return ServerState(
        project=project,
        settings=settings,
        resolver=resolver,
        backend=make_backend(settings, metrics, project.workspace),
        keys=KeyStore(keys_path(project.workspace)),
        feedback=FeedbackStore.for_workspace(project.workspace, settings.feedback_db),
        metrics=metrics,
        redactor=redactor,
        router=CanaryRouter(resolver, project.config.canary),
        knowledge=KnowledgeService(open_for(project), metrics, settings.knowledge_check_s),
    )


def configured_knowledge(settings: ServeConfig) -> list[str]:
    """Knowledge bases the serve section names (registered models name theirs in their task, found on use)."""
    return sorted({*settings.knowledge.values(), *(m.knowledge for m in settings.models if m.knowledge)})


def dependencies(state: ServerState) -> dict[str, Callable[[], object]]:
    """What requests would otherwise import or build concurrently on first use: loaded once at start-up."""
    loads: dict[str, Callable[[], object]] = {}
    if isinstance(state.backend, TransformersBackend) or state.backend.name in ("llamacpp", "vllm"):
        loads["transformers"] = import_model_libraries
    resolver = state.resolver
    if isinstance(resolver, TargetResolver) and resolver.has_registry():
        loads["registry"] = lambda: resolver.registry  # imports MLflow and opens the registry
    for name in configured_knowledge(state.settings):
        loads[f"knowledge:{name}"] = partial(state.knowledge.preload, name)  # its store and embedder
    return loads


def load_dependencies(state: ServerState) -> None:
    """Load every dependency (slow: off the event loop); each failure is logged and kept in `state.failed`."""
    for name, load in dependencies(state).items():
        try:
            load()
        except Exception as exc:  # any failure: the server still starts, /ready says what is missing
            log.exception("start-up: %s did not load", name)
            state.failed[name] = f"{exc.__class__.__name__}: {exc}"
