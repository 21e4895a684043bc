"""ner: named entities as character spans, trained as BIO token tags on an encoder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.train.common import TaskParts


class Ner(KindDefaults):
    name = "ner"
    summary = "Named-entity recognition from {start, end, label} character spans (BIO tags on tokens)."
    required_columns = ("text", "entities")
    allowed_columns = frozenset({"text", "entities"})
    metrics = ("entity_f1", "entity_precision", "entity_recall")
    head = "token_classification"

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        from tuneloom.data.format import ner_example

        return ner_example(data, record, clean)

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        from tuneloom.data.tokens import measure_spans

        measure_spans(examples, tokenizer)

    def labels(self, examples: list[Example]) -> list[str] | None:
        return sorted({s["label"] for e in examples for s in e["entities"]})

    def label_counts(self, splits: dict[str, list[Example]]) -> dict[str, dict[str, int]] | None:
        return {s: dict(Counter(span["label"] for e in rows for span in e["entities"])) for s, rows in splits.items()}

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.train import ner

        return ner.prepare(task, model_path, precision, manifest, train, validation)

    def eval_passes(self, with_production: bool) -> int:
        return 2 + int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.ner import evaluate_ner

        return evaluate_ner(ctx)

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from tuneloom.evaluate.baselines import ner_baselines

        return ner_baselines(ctx, scored)


KIND = Ner()
