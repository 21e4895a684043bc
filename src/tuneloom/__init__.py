"""Tuneloom: fine-tune open models into specialists for one company's work, on its own machines.

The public names below load on first use, so `import tuneloom` (and the CLI's start-up) stays cheap:
the project file models need pydantic, the stages torch and transformers.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING, Any

from tuneloom.errors import DataError, ModelNotAvailable, ProjectFileError, TuneloomError

if TYPE_CHECKING:
    from tuneloom.config import Project, ProjectConfig, load_project
    from tuneloom.data import prepare_dataset
    from tuneloom.evaluate import evaluate_run
    from tuneloom.loop import run_project
    from tuneloom.train import train_task

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # private by default: no usage pings
# bitsandbytes warns at import (peft imports it) that an optional CPU kernel fetched from the hub is
# absent; Tuneloom never fetches code, so that one message is noise on every command. Set here, before
# anything imports bitsandbytes.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")
)

__version__ = "0.1.0"

_LAZY = {
    "Project": "tuneloom.config",
    "ProjectConfig": "tuneloom.config",
    "load_project": "tuneloom.config",
    "prepare_dataset": "tuneloom.data",
    "train_task": "tuneloom.train",
    "evaluate_run": "tuneloom.evaluate",
    "run_project": "tuneloom.loop",
}


def __getattr__(name: str) -> Any:
    """The public names of `_LAZY`, imported from their module on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuneloom' has no attribute {name!r}")


__all__ = [
    "DataError",
    "ModelNotAvailable",
    "Project",
    "ProjectConfig",
    "ProjectFileError",
    "TuneloomError",
    "evaluate_run",
    "load_project",
    "prepare_dataset",
    "run_project",
    "train_task",
]
