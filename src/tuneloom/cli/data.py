"""`tuneloom data prepare`: versioned datasets from each task's sources, with their accounting."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from tuneloom.cli.common import DEFAULT_CONFIG, ConfigOpt, TaskOpt, err, load, out, user_errors

if TYPE_CHECKING:
    from tuneloom.artifacts import PreparedDataset


def prepare(config: ConfigOpt = DEFAULT_CONFIG, task: TaskOpt = None) -> None:
    """Ingest, clean, deduplicate, redact and split each task's sources into a versioned dataset with a report.

    Example: tuneloom data prepare -c tuneloom.yaml --task ticket-triage
    """
    from tuneloom.data import prepare_dataset

    with user_errors():
        project = load(config)
        names = [project.config.task(task).name] if task else project.config.task_names()
        for name in names:
            ds = prepare_dataset(project, name, log=lambda m: err.print(f"  {m}", highlight=False))
            out.print(_dataset_table(name, ds))
            out.print(f"splits: {ds.counts}" + (f"  labels: {len(ds.labels)}" if ds.labels else ""))
            out.print(f"written to {ds.path} (report: {Path(ds.path) / 'report.html'})")


def _dataset_table(name: str, ds: PreparedDataset) -> Table:
    """Per source: rows read, kept, rejected by reason, duplicates and redactions."""
    table = Table(title=f"{name}: dataset {ds.version}{' (reused)' if ds.reused else ''}")
    for col in ("source", "read", "kept", "rejected", "duplicates (near)", "redacted"):
        table.add_column(col)
    for s in ds.sources:
        rejected = ", ".join(f"{k} {v}" for k, v in s.rejected.items()) or "0"
        redacted = ", ".join(f"{k} {v}" for k, v in s.redacted.items()) or "-"
        table.add_row(Path(s.path).name, str(s.read), str(s.kept), rejected, f"{s.duplicates} ({s.near_duplicates})", redacted)
    return table
