"""Rich progress bars for index builds (or none, for callers that asked for quiet)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

T = TypeVar("T")


class Bars:
    """A context manager handing out progress tasks; with `enabled=False` every call is a no-op."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self._progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            if enabled
            else None
        )

    def __enter__(self) -> Bars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, description: str, total: int | None) -> TaskID | None:
        return None if self._progress is None else self._progress.add_task(description, total=total)

    def advance(self, task: TaskID | None, steps: int = 1) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, steps)

    def track(self, items: Iterable[T], description: str) -> Iterator[T]:
        """`items` passed through, counted on a bar of unknown length."""
        task = self.add(description, None)
        for item in items:
            yield item
            self.advance(task)
