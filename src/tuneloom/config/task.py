"""One task of a project (`tasks[]`) and the rules relating its sections, each a small named function."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tuneloom.catalog.entries import CATALOG
from tuneloom.config.base import Strict
from tuneloom.config.data import DataConfig
from tuneloom.config.embedding import EmbeddingConfig
from tuneloom.config.evaluation import EvalConfig, GateConfig
from tuneloom.config.feedback import FeedbackConfig
from tuneloom.config.loop import IterateConfig
from tuneloom.config.rag import RagConfig
from tuneloom.config.train import SEARCH_PARAMS, MethodConfig, SearchConfig, TrainConfig
from tuneloom.tasks import kind_names, kind_of, rules

BUILTIN_TASK_TYPES = tuple(kind_names())  # the built-in kinds, for the schema and the docs


class TaskConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Lowercase id used for folders.")
    type: str = Field(
        json_schema_extra={"enum": list(BUILTIN_TASK_TYPES)},
        description="Task type: " + ", ".join(BUILTIN_TASK_TYPES) + " (or a registered task kind).",
    )
    model: str = Field(description="Catalog name, local model folder, or Hugging Face hub id.")
    trust_remote_code: bool = False
    data: DataConfig
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    search: SearchConfig | None = Field(None, description="Hyperparameter search space for `tuneloom train --search N`.")
    registry_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Registered model name for this task's versions (default: the task name).",
    )
    label_descriptions: dict[str, str] | None = Field(
        None, description="Classification: a short description per label, used for the zero-shot baseline."
    )
    feedback: FeedbackConfig = Field(
        default_factory=FeedbackConfig, description="Review rules and guards for rows made from served feedback."
    )
    iterate: IterateConfig = Field(
        default_factory=IterateConfig, description="`tuneloom iterate`: retraining on reviewed feedback, gate and promotion."
    )
    knowledge: str | None = Field(
        None, description="Name of a knowledge base (the project's `knowledge:` list) this task retrieves from."
    )
    rag: RagConfig = Field(RagConfig(), description="Tasks with `knowledge`: how retrieved passages enter the prompt.")
    embedding: EmbeddingConfig | None = Field(
        None, description="embedding tasks: training pairs, hard negatives and the loss (defaults when left out)."
    )

    @property
    def packs(self) -> bool:
        """Whether training batches are packed (train.packing, or its default for the task type)."""
        return self.train.packing if self.train.packing is not None else kind_of(self.type).packs_by_default

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in kind_names():
            names = [repr(k) for k in kind_names()]
            allowed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise ValueError(f"Input should be {allowed}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        """The rules that relate several settings, each a small named function, in a fixed order."""
        for rule in TASK_RULES:
            rule(self)
        return self


def check_validation_split(task: TaskConfig) -> None:
    if (task.train.keep_best or task.train.early_stopping_patience) and task.data.split.validation == 0:
        raise ValueError("train.keep_best and train.early_stopping_patience need a validation split (data.split.validation > 0)")


def check_catalog_model(task: TaskConfig) -> None:
    entry = CATALOG.get(task.model)
    if entry is None:
        return
    if task.type not in entry.tasks:
        raise ValueError(f"catalog model '{task.model}' cannot do {task.type}; it supports: {', '.join(sorted(entry.tasks))}")
    if task.method.kind == "qlora" and not entry.quantizable:
        raise ValueError(
            f"qlora needs a model whose linear layers bitsandbytes can quantize to 4 bits; "
            f"'{task.model}' is not one: use method.kind 'lora' or 'full'"
        )


def check_search_space(task: TaskConfig) -> None:
    if task.search is None:
        return
    if not task.search.params():
        raise ValueError(f"search: give at least one setting to vary: {', '.join(SEARCH_PARAMS)}")
    if task.search.r is not None and task.method.kind == "full":
        raise ValueError("search.r needs method.kind lora or qlora (full fine-tuning has no rank)")
    if task.data.split.validation == 0:
        raise ValueError("search minimises validation loss: data.split.validation must be above 0")


def check_knowledge(task: TaskConfig) -> None:
    if task.knowledge is None:
        if task.rag != RagConfig():
            raise ValueError("rag settings apply to tasks that name a knowledge base: set `knowledge: NAME` or remove `rag`")
        return
    if not kind_of(task.type).takes_knowledge:
        raise ValueError(f"knowledge: {task.type} tasks do not retrieve from a knowledge base; remove `knowledge`")


TASK_RULES = (
    rules.check_packing,
    check_validation_split,
    check_catalog_model,
    rules.check_qlora,
    rules.check_metric_names,
    check_search_space,
    rules.check_columns,
    rules.check_data_options,
    rules.check_embedding_section,
    rules.check_kind_rules,
    check_knowledge,
)
