"""The contract every task type implements (`TaskKind`), and what stages hand it.

A task kind gathers everything that varies with the task type: the column roles and config rules
it accepts, its metrics and their direction, how a source record becomes an example, the training
parts, how its trained model is loaded and how it is evaluated. Stages call the kind; nothing
outside `tuneloom.tasks` compares task-type strings. Heavy libraries (torch, transformers) are
imported inside the methods that need them, so the CLI stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest, KnowledgeAccount
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.knowledge.raft import Retriever
    from tuneloom.train.common import TaskParts

Example = dict[str, Any]
Built = tuple[Example | None, str | None]  # (example, None) or (None, reject reason)

LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses and perplexity)."""
    return metric in LOWER_IS_BETTER


@dataclass(frozen=True)
class ProductionModel:
    """The registry's production version, as evaluation needs it."""

    path: Path
    method: str
    base_model_path: str


@dataclass(frozen=True)
class EvalContext:
    """Everything an evaluation needs, in one object (instead of a dozen positional parameters)."""

    task: TaskConfig
    model_dir: Path
    base_path: Path
    precision: str
    labels: list[str]
    rows: list[dict[str, Any]]
    tick: Callable[[int], None]
    production: ProductionModel | None = None
    general: list[dict[str, Any]] | None = None  # chat: the general-ability set for the forgetting check
    train_dir: Path | None = None  # the run's dataset version: baselines fit on its train split and cache there

    @property
    def method(self) -> str:
        return self.task.method.kind


@dataclass(frozen=True)
class FeedbackItem:
    """One rated answer from the feedback store, as a task kind turns it into training rows."""

    feedback_id: int
    request: dict[str, Any] | None  # as the server stored it: chat `messages`, a `prompt`, or classify `input`
    response: dict[str, Any] | None  # chat `choices`, classify `labels` (+ `sources` when retrieval ran)
    rating: int  # 1..5 (thumbs: up = 5, down = 1)
    rating_kind: str  # thumbs | scale
    correction: str | None
    bad: bool  # rated at or below the task's feedback.bad_rating_max
    better_answer: str | None = None  # a well-rated answer to the same prompt, when this one was rated bad


FeedbackFormat = Literal["sft", "dpo", "kto", "label", "none"]


@dataclass(frozen=True)
class FeedbackRows:
    """What one feedback item gives a task: rows in its training format, or why none."""

    format: FeedbackFormat
    rows: list[Example]
    reason: str | None = None  # why there are no rows (e.g. needs_correction), for the queue and the accounting
    needs_review: bool = False  # a bad answer with nothing to learn from yet: a reviewer may write the correction


InferenceHead = Literal["causal_lm", "sequence_classification", "token_classification", "sentence_embedding"]
ScoutQuality = Literal["generation", "probe"]  # scout scores a base model by its answers, or by a linear probe


class TaskKind(Protocol):
    """One task type. Implement it in one module of `tuneloom.tasks` and `register` an instance."""

    name: str  # the project file's `type`
    summary: str  # one line for docs and `tuneloom config schema`
    required_columns: tuple[str, ...]  # column roles the task needs
    allowed_columns: frozenset[str]  # column roles it may use (group, split, slice fit every task)
    metrics: tuple[str, ...]  # what evaluation reports, the first being the headline
    causal_lm: bool  # trains a causal language model (QLoRA, packing, attention choice apply)
    packs_by_default: bool  # default of train.packing
    head: InferenceHead  # what loads its trained model for inference
    serve_as: str | None  # the /v1 capability a registered version offers ("chat", "classification") or None
    scout_quality: ScoutQuality  # how `tuneloom scout` scores a candidate base model on the task's data
    can_pack: bool  # train.packing is allowed
    multi_label: bool  # data.multi_label is allowed
    takes_system_prompt: bool  # data.system_prompt is allowed
    per_class_f1: bool  # gate.max_class_f1_drop is allowed
    forgetting_check: bool  # eval.forgetting_check scores the general-ability set
    takes_knowledge: bool  # the task may name a knowledge base (`knowledge:`)
    trains_embedder: bool  # trains a sentence embedder for a knowledge base (the task's `embedding:` section applies)

    def check_config(self, task: TaskConfig) -> None:
        """Raise ValueError naming the setting when the task's settings do not fit this type."""

    def gate_metrics(self, task: TaskConfig) -> tuple[str, ...]:
        """Metrics the gate's `min` and `max_drop` rules may name."""

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        """One source record -> one example in the task's row format, or a reject reason."""

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        """Add `_tokens` (and `_prompt_tokens` where a prompt can be truncated away) to each example."""

    def labels(self, examples: list[Example]) -> list[str] | None:
        """The label set the dataset defines (classes, entity types), or None."""

    def label_counts(self, splits: dict[str, list[Example]]) -> dict[str, dict[str, int]] | None:
        """Label -> count per split, or None for tasks without labels."""

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        """Model, tokenizer, encoded splits and trainer pieces for the shared training loop."""

    def eval_passes(self, with_production: bool) -> int:
        """Progress-bar passes over the test rows (for sizing the bar)."""

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        """Score base, tuned and (when given) production on `ctx.rows`."""

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Cheap baselines fitted on the train split and scored on `ctx.rows`, compared with the tuned
        model's results in `scored` (what `evaluate` returned): name -> {method, metrics, intervals,
        seconds}, or name -> {skipped: reason} (see `tuneloom.evaluate.baselines`)."""

    def slice_key(self, row: Example) -> str | None:
        """What to group per-slice results by when a row has no `slice` value."""

    def feedback_rows(self, task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
        """Rows in the task's training format from one rated (and maybe corrected) answer (see `tuneloom.feedback`)."""

    def attach_knowledge(
        self, task: TaskConfig, splits: dict[str, list[Example]], retriever: Retriever, tokenizer: Any
    ) -> KnowledgeAccount | None:
        """At data-prep time, record retrieved passages in each example (and re-measure tokens when a
        tokenizer is given); None for kinds whose examples hold no passages."""


class KindDefaults:
    """Shared defaults for kinds; a kind overrides what differs (composition of plain functions below)."""

    causal_lm = False
    packs_by_default = False
    serve_as: str | None = None
    scout_quality: ScoutQuality = "generation"
    can_pack = False
    multi_label = False
    takes_system_prompt = False
    per_class_f1 = False
    forgetting_check = False
    takes_knowledge = False
    trains_embedder = False

    def check_config(self, task: TaskConfig) -> None:
        return None

    def gate_metrics(self, task: TaskConfig) -> tuple[str, ...]:
        return tuple(self.metrics)  # type: ignore[attr-defined]  # every kind declares `metrics`

    def labels(self, examples: list[Example]) -> list[str] | None:
        return None

    def label_counts(self, splits: dict[str, list[Example]]) -> dict[str, dict[str, int]] | None:
        return None

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"baselines": {"skipped": f"no cheap baseline is defined for {self.name} tasks"}}  # type: ignore[attr-defined]  # every kind declares `name`

    def slice_key(self, row: Example) -> str | None:
        return None

    def feedback_rows(self, task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
        return FeedbackRows("none", [], f"{self.name} tasks do not learn from served feedback")  # type: ignore[attr-defined]  # every kind declares `name`

    def attach_knowledge(
        self, task: TaskConfig, splits: dict[str, list[Example]], retriever: Retriever, tokenizer: Any
    ) -> KnowledgeAccount | None:
        return None
