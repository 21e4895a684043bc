"""Tuneloom: fine-tune open models into specialists for one company's work, on its own machines."""

import logging
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # private by default: no usage pings
# bitsandbytes warns at import (peft imports it) that an optional CPU kernel fetched from the hub is
# absent; Tuneloom never fetches code, so that one message is noise on every command. Set here, before
# anything imports bitsandbytes.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")
)

from tuneloom.config import Project, ProjectConfig, load_project  # noqa: E402
from tuneloom.errors import DataError, ModelNotAvailable, ProjectFileError, TuneloomError  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):  # heavy stages (torch, transformers) load on first use
    if name == "prepare_dataset":
        from tuneloom.data import prepare_dataset

        return prepare_dataset
    if name == "train_task":
        from tuneloom.train import train_task

        return train_task
    if name == "evaluate_run":
        from tuneloom.evaluate import evaluate_run

        return evaluate_run
    if name == "run_project":
        from tuneloom.loop import run_project

        return run_project
    raise AttributeError(name)


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
