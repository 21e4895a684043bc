"""Project-file rules that depend on the task type, stated once over the kinds' declared traits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tuneloom.tasks.base import TaskKind
from tuneloom.tasks.registry import kind_of, kinds

if TYPE_CHECKING:
    from tuneloom.config import TaskConfig

ROLES = ("prompt", "response", "messages", "text", "label", "entities", "chosen", "rejected", "passage")
ROLE_HINTS = {
    "text": "the input text column or columns",
    "label": "the column holding the class",
    "entities": "the column holding the {start, end, label} spans",
    "prompt": "the column holding the user's message",
    "chosen": "the column holding the better answer",
    "rejected": "the column holding the worse answer",
    "passage": "the column holding the passage that answers the query",
}


def _which(trait: Callable[[TaskKind], bool], sep: str = " and ") -> str:
    """The names of the kinds with a trait, as a message lists them ('chat_sft and pretrain')."""
    return sep.join(name for name, kind in kinds().items() if trait(kind))


def check_columns(task: TaskConfig) -> None:
    """The column roles the task type needs and allows (raises ValueError naming the role)."""
    kind, cols = kind_of(task.type), task.data.columns
    for role in kind.required_columns:
        if not getattr(cols, role):
            raise ValueError(f"{task.type} needs data.columns.{role} ({ROLE_HINTS[role]})")
    extra = sorted(r for r in set(ROLES) - kind.allowed_columns if getattr(cols, r))
    if extra:
        uses = sorted(kind.allowed_columns | {"group", "split", "slice"})
        raise ValueError(f"data.columns.{extra[0]} is not used by {task.type} tasks; {task.type} uses: {uses}")


def check_data_options(task: TaskConfig) -> None:
    kind, data = kind_of(task.type), task.data
    if data.multi_label and not kind.multi_label:
        raise ValueError(f"data.multi_label applies to {_which(lambda k: k.multi_label)} tasks only")
    if data.system_prompt and not kind.takes_system_prompt:
        raise ValueError(f"data.system_prompt applies to {_which(lambda k: k.takes_system_prompt)} tasks only")


def check_embedding_section(task: TaskConfig) -> None:
    if task.embedding is not None and not kind_of(task.type).trains_embedder:
        raise ValueError(f"the embedding section applies to {_which(lambda k: k.trains_embedder)} tasks, not {task.type}")


def check_packing(task: TaskConfig) -> None:
    if task.train.packing and not kind_of(task.type).can_pack:
        raise ValueError(f"train.packing applies to {_which(lambda k: k.can_pack)} tasks, not {task.type}")


def check_qlora(task: TaskConfig) -> None:
    if task.method.kind == "qlora" and not kind_of(task.type).causal_lm:
        causal = _which(lambda k: k.causal_lm, ", ")
        raise ValueError(f"qlora is supported for {causal} tasks; use method.kind 'lora' for {task.type}")


def check_metric_names(task: TaskConfig) -> None:
    kind = kind_of(task.type)
    allowed = kind.gate_metrics(task)
    for rule in ("min", "max_drop"):
        unknown = [m for m in getattr(task.gate, rule) if m not in allowed]
        if unknown:
            raise ValueError(f"gate.{rule}: unknown metric(s) {unknown} for {task.type}; allowed: {list(allowed)}")
    if task.gate.max_class_f1_drop is not None and not kind.per_class_f1:
        raise ValueError(f"gate.max_class_f1_drop applies to {_which(lambda k: k.per_class_f1)} tasks only")
    if task.gate.max_forgetting is not None and not (kind.forgetting_check and task.eval.forgetting_check):
        raise ValueError(
            f"gate.max_forgetting needs a {_which(lambda k: k.forgetting_check)} task with eval.forgetting_check: true"
        )
    beat = task.gate.beat_baselines
    if beat is not None and (beat.metric not in allowed or not task.eval.baselines):
        raise ValueError(f"gate.beat_baselines needs eval.baselines: true and a metric among {list(allowed)}")
    unknown = [m for m in task.eval.metrics or [] if m not in kind.metrics]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} for {task.type}; allowed: {list(kind.metrics)}")


def check_kind_rules(task: TaskConfig) -> None:
    """The kind's own rules (`TaskKind.check_config`)."""
    kind_of(task.type).check_config(task)
