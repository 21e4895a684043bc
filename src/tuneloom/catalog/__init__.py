"""Where base models come from: packaged, local folders, and the Hugging Face hub."""

from tuneloom.catalog.entries import CATALOG, CatalogEntry
from tuneloom.catalog.info import ModelInfo, model_info
from tuneloom.catalog.resolve import model_status, pull_model, resolve_model
from tuneloom.errors import ModelNotAvailable

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "ModelInfo",
    "ModelNotAvailable",
    "model_info",
    "model_status",
    "pull_model",
    "resolve_model",
]
