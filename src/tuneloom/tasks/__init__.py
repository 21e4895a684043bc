"""Task kinds: one module per task type, one registry (see `tuneloom.tasks.base.TaskKind`).

    from tuneloom.tasks import kind_of
    kind_of(task.type).metrics

Adding a task type: write a module with a class implementing `TaskKind` and call `register(...)`
with an instance (the built-in kinds are registered below); its name becomes a valid `type:` in
the project file.
"""

from __future__ import annotations

from tuneloom.tasks.base import EvalContext, FeedbackItem, FeedbackRows, ProductionModel, TaskKind, lower_is_better
from tuneloom.tasks.registry import kind_names, kind_of, kinds, register, unregister

__all__ = [
    "EvalContext",
    "FeedbackItem",
    "FeedbackRows",
    "ProductionModel",
    "TaskKind",
    "kind_names",
    "kind_of",
    "kinds",
    "lower_is_better",
    "register",
    "unregister",
]
