"""Data preparation: ingest -> clean -> deduplicate -> split -> versioned dataset folder."""

from tuneloom.errors import DataError
from tuneloom.data.prepare import PreparedDataset, load_split, prepare_dataset

__all__ = ["DataError", "PreparedDataset", "load_split", "prepare_dataset"]
