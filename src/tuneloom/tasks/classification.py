"""classification: one label per text (or several with data.multi_label), a head on an encoder or decoder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, FeedbackItem, FeedbackRows, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.train.common import TaskParts


def example_labels(example: Example) -> list[str]:
    return list(example["labels"]) if "labels" in example else [example["label"]]


class Classification(KindDefaults):
    name = "classification"
    summary = "Text classification: one label per text, or several with data.multi_label."
    required_columns = ("text", "label")
    allowed_columns = frozenset({"text", "label"})
    metrics = ("accuracy", "macro_f1", "weighted_f1")
    head = "sequence_classification"
    serve_as = "classification"
    scout_quality = "probe"
    multi_label = True
    per_class_f1 = True

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        from tuneloom.data.format import classification_example

        return classification_example(data, record, clean)

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        from tuneloom.data.tokens import measure_texts

        measure_texts(examples, tokenizer)

    def labels(self, examples: list[Example]) -> list[str] | None:
        return sorted({label for e in examples for label in example_labels(e)})

    def label_counts(self, splits: dict[str, list[Example]]) -> dict[str, dict[str, int]] | None:
        return {s: dict(Counter(label for e in rows for label in example_labels(e))) for s, rows in splits.items()}

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.train import classify

        return classify.prepare(task, model_path, precision, manifest, train, validation)

    def eval_passes(self, with_production: bool) -> int:
        return 1 + int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.classify import (
            evaluate_classification,
            evaluate_multilabel,
        )

        return (evaluate_multilabel if ctx.task.data.multi_label else evaluate_classification)(ctx)

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from tuneloom.evaluate.baselines import classification_baselines

        return classification_baselines(ctx, scored)

    def slice_key(self, row: Example) -> str | None:
        return row.get("label")

    def feedback_rows(self, task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
        from tuneloom.feedback.convert import label_rows

        return label_rows(task, item)


KIND = Classification()
