"""Auto-accept rules (`tasks[].feedback.auto_accept`): which feedback needs no reviewer."""

from __future__ import annotations

from tuneloom.config import AutoAcceptRule, Project, TaskConfig
from tuneloom.serve.auth import KeyStore, keys_path


class RuleBook:
    """A task's rules with the key names resolved to key ids once (revoked keys are not trusted)."""

    def __init__(self, project: Project, task: TaskConfig) -> None:
        self.rules = list(task.feedback.auto_accept)
        wanted = {n for r in self.rules for n in r.key_names}
        keys = KeyStore(keys_path(project.workspace)).list() if wanted else []
        self.names = {k.id: k.name for k in keys if k.revoked is None}

    def match(self, key_id: str | None, tags: list[str], has_correction: bool) -> AutoAcceptRule | None:
        """The first rule that accepts feedback from `key_id` with `tags`, or None."""
        for rule in self.rules:
            if rule.require_correction and not has_correction:
                continue
            by_key = key_id is not None and (key_id in rule.key_ids or self.names.get(key_id) in rule.key_names)
            if by_key or set(tags) & set(rule.tags):
                return rule
        return None
