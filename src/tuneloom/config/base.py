"""The base of every project-file model: unknown keys are errors, assignments are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A project-file section: forbids unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
