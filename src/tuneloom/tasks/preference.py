"""preference: DPO or KTO on (prompt, chosen, rejected) triples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, FeedbackItem, FeedbackRows, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.train.common import TaskParts


class Preference(KindDefaults):
    name = "preference"
    summary = "Preference tuning (DPO or KTO) on a prompt with a chosen and a rejected answer."
    required_columns = ("prompt", "chosen", "rejected")
    allowed_columns = frozenset({"prompt", "chosen", "rejected"})
    metrics = ("reward_accuracy", "reward_margin")
    causal_lm = True
    head = "causal_lm"
    serve_as = "chat"
    takes_system_prompt = True

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        from tuneloom.data.format import preference_example

        return preference_example(data, record, clean)

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        from tuneloom.data.tokens import measure_pairs

        measure_pairs(examples, tokenizer)

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.train import preference

        return preference.prepare(task, model_path, precision, manifest, train, validation)

    def eval_passes(self, with_production: bool) -> int:
        return 4 + 2 * int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.preference import evaluate_preference

        return evaluate_preference(ctx)

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {"baselines": {"skipped": "a preference pair has no single reference answer for a retrieval baseline to match"}}

    def feedback_rows(self, task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
        """A correction -> a DPO pair; a bare rating -> a KTO row when training with train.preference_loss: kto."""
        from tuneloom.feedback.convert import dpo_rows, kto_rows

        if item.correction or item.better_answer or task.train.preference_loss != "kto":
            return dpo_rows(task, item)
        return kto_rows(task, item)


KIND = Preference()
