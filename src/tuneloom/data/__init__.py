"""Data preparation: ingest -> clean -> dedup -> redact -> format -> split -> report, as a versioned dataset folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneloom.errors import DataError

if TYPE_CHECKING:
    from tuneloom.data.prepare import PreparedDataset, load_split, prepare_dataset

__all__ = ["DataError", "PreparedDataset", "load_split", "prepare_dataset"]


def __getattr__(name: str) -> Any:
    """Lazy: `tuneloom data` commands register at CLI start without importing pandas and datasketch."""
    if name in ("PreparedDataset", "load_split", "prepare_dataset"):
        from tuneloom.data import prepare

        return getattr(prepare, name)
    raise AttributeError(name)
