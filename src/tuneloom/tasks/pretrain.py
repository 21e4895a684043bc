"""pretrain: continued pre-training on raw domain text (next-token loss, packed windows by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.train.common import TaskParts


class Pretrain(KindDefaults):
    name = "pretrain"
    summary = "Continued pre-training on raw domain text."
    required_columns = ("text",)
    allowed_columns = frozenset({"text"})
    metrics = ("loss", "perplexity")
    causal_lm = True
    packs_by_default = True
    head = "causal_lm"
    serve_as = "chat"
    can_pack = True

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        from tuneloom.data.format import pretrain_example

        return pretrain_example(data, record, clean)

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        from tuneloom.data.tokens import measure_texts

        measure_texts(examples, tokenizer)

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.train import pretrain

        return pretrain.prepare(task, model_path, precision, manifest, train, validation)

    def eval_passes(self, with_production: bool) -> int:
        return 2 + int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.pretrain import evaluate_pretrain

        return evaluate_pretrain(ctx)

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"baselines": {"skipped": "perplexity on raw text has no cheap baseline that is not itself a language model"}}


KIND = Pretrain()
