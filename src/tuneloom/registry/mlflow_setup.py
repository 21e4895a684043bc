"""MLflow, imported once and quietly, and its failures as readable RegistryErrors.

MLflow is imported only when a registry function needs it. Its package imports itself in a cycle,
so two threads importing different parts of it at once (as `tuneloom serve` does) can each see it
half-initialised ("cannot import name 'MlflowClient'"): the first import, and every client's
construction, happen under one lock.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from tuneloom.registry.errors import RegistryError
from tuneloom.registry.uris import redact_text

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

F = TypeVar("F", bound=Callable[..., Any])

# Every MLflow module Tuneloom imports: once these are loaded, a later `from mlflow... import` is a lookup.
_MODULES = ("mlflow", "mlflow.exceptions", "mlflow.entities", "mlflow.tracking", "mlflow.artifacts")
_LOCK = threading.Lock()


def _quiet_environment() -> None:
    """Before the first `import mlflow`: no usage telemetry, no links or progress bars, no migration chatter."""
    # MLflow 3.2+ sends usage telemetry unless told not to; Tuneloom promises no network by default.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # With a server, MLflow prints run links (with any user:password in the URI) to stdout and shows
    # download bars; and it retries a dead server for about 4 minutes before failing.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    # MLflow resets the level of its "mlflow" logger on import, not of its children.
    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store"):
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)


@functools.cache
def _import_mlflow() -> None:
    _quiet_environment()
    for name in _MODULES:
        importlib.import_module(name)


def load_mlflow() -> None:
    """Import MLflow (once, whichever thread comes first; the others wait for it to finish)."""
    with _LOCK:
        _import_mlflow()


def new_client(uri: str) -> MlflowClient:
    """An MLflow client whose tracking and registry store is `uri` (built under the import lock)."""
    with _LOCK:
        _import_mlflow()
        from mlflow.tracking import MlflowClient

        with warnings.catch_warnings():  # MLflow's SQL store uses an option SQLAlchemy 2.1 deprecates
            warnings.filterwarnings("ignore", message=".*noload.*", category=DeprecationWarning)
            return MlflowClient(tracking_uri=uri, registry_uri=uri)


def error_code(exc: Exception) -> str:
    """MLflow's error code of an exception (`RESOURCE_DOES_NOT_EXIST`, ...), or ''."""
    return str(getattr(exc, "error_code", ""))


@contextmanager
def registry_errors(display_uri: str) -> Iterator[None]:
    """Turn MLflow failures (server down, bad URI, ...) inside the block into a readable RegistryError."""
    load_mlflow()
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise RegistryError(f"model registry {display_uri}: {redact_text(exc.message)}") from None


def mlflow_errors(func: F) -> F:
    """`registry_errors` around a method of an object with a `display_uri` (a ModelRegistry, a tracker)."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with registry_errors(self.display_uri):
            return func(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature; mypy cannot see it
