"""The registry of task kinds: the built-in six, plus any a user or test registers."""

from __future__ import annotations

from tuneloom.tasks.base import TaskKind

_KINDS: dict[str, TaskKind] = {}
_LOADED = False


def register(kind: TaskKind) -> TaskKind:
    """Make `kind` available as `type: <kind.name>` in project files; returns it."""
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a registered kind (tests that register a toy kind clean up with this)."""
    _KINDS.pop(name, None)


def _builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    from tuneloom.tasks import chat_sft, classification, embedding, ner, preference, pretrain

    for module in (chat_sft, classification, embedding, ner, preference, pretrain):
        _KINDS.setdefault(module.KIND.name, module.KIND)
    _LOADED = True


def kinds() -> dict[str, TaskKind]:
    _builtins()
    return dict(_KINDS)


def kind_names() -> list[str]:
    return list(kinds())


def kind_of(name: str) -> TaskKind:
    """The kind registered as `name`; KeyError naming the known kinds otherwise."""
    found = kinds().get(name)
    if found is None:
        raise KeyError(f"unknown task type '{name}'; known: {', '.join(kind_names())}")
    return found
