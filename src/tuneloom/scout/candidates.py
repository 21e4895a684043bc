"""Which models at which precisions a task's scout compares, one row each."""

from __future__ import annotations

from pydantic import BaseModel

from tuneloom.config import Project, ScoutCandidate, ScoutPrecision


class Candidate(BaseModel):
    """One row of the comparison: a model reference at one precision, for one task."""

    task: str
    model: str
    precision: ScoutPrecision
    label: str

    @property
    def name(self) -> str:
        return f"{self.label} @ {self.precision}"


def candidates_for(project: Project, task_name: str) -> list[Candidate]:
    """The task's own list under scout.tasks, else scout.candidates, else the task's configured model."""
    scout = project.config.scout
    task = project.config.task(task_name)
    entries = scout.tasks.get(task.name) or scout.candidates or [task.model]
    rows: list[Candidate] = []
    for entry in entries:
        spec = ScoutCandidate(model=entry) if isinstance(entry, str) else entry
        for precision in spec.precisions or scout.precisions:
            row = Candidate(task=task.name, model=spec.model, precision=precision, label=spec.label or spec.model)
            if all(r.name != row.name for r in rows):
                rows.append(row)
    return rows
