"""chat_sft: supervised fine-tuning on conversations; the loss covers the assistant's answers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, FeedbackItem, FeedbackRows, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest, KnowledgeAccount
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.knowledge.raft import Retriever
    from tuneloom.train.common import TaskParts


class ChatSft(KindDefaults):
    name = "chat_sft"
    summary = "Supervised fine-tuning on conversations (prompt/response or OpenAI-format messages)."
    required_columns: tuple[str, ...] = ()
    allowed_columns = frozenset({"prompt", "response", "messages"})
    metrics = ("loss", "perplexity", "rouge_l", "token_f1", "exact_match")
    causal_lm = True
    head = "causal_lm"
    serve_as = "chat"
    can_pack = True
    takes_system_prompt = True
    forgetting_check = True
    takes_knowledge = True

    def check_config(self, task: TaskConfig) -> None:
        cols = task.data.columns
        if cols.messages and (cols.prompt or cols.response):
            raise ValueError("chat_sft takes either data.columns.messages or data.columns.prompt + response, not both")
        if not cols.messages and not (cols.prompt and cols.response):
            raise ValueError("chat_sft needs data.columns.prompt and data.columns.response (or data.columns.messages)")

    def gate_metrics(self, task: TaskConfig) -> tuple[str, ...]:
        return (*self.metrics, "judge_score")

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        from tuneloom.data.format import chat_example

        return chat_example(data, record, clean)

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        from tuneloom.data.tokens import measure_chat

        measure_chat(examples, tokenizer)

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.knowledge.raft import in_prompt
        from tuneloom.train import sft

        if task.knowledge:  # the passages recorded at data-prep time go into the prompts (RAFT)
            train, validation = in_prompt(train, task.rag.passage_chars), in_prompt(validation, task.rag.passage_chars)
        return sft.prepare(task, model_path, precision, manifest, train, validation)

    def attach_knowledge(
        self, task: TaskConfig, splits: dict[str, list[Example]], retriever: Retriever, tokenizer: Any
    ) -> KnowledgeAccount:
        """RAFT passages for training and validation rows, the question's top k for test rows."""
        from tuneloom.artifacts import KnowledgeAccount, KnowledgeSplit
        from tuneloom.data.tokens import measure_chat
        from tuneloom.knowledge.raft import attach, in_prompt

        counts = {s: attach(rows, retriever, task.rag, task.data.split.seed, raft=s != "test") for s, rows in splits.items()}
        if tokenizer is not None:
            for rows in splits.values():
                prompted = in_prompt(rows, task.rag.passage_chars)
                measure_chat(prompted, tokenizer)
                for row, measured in zip(rows, prompted):
                    row["_tokens"], row["_prompt_tokens"] = measured["_tokens"], measured["_prompt_tokens"]
        return KnowledgeAccount(
            knowledge=retriever.name,
            version=retriever.version,
            rag=task.rag.model_dump(mode="json"),
            splits={s: KnowledgeSplit(**c) for s, c in counts.items()},
        )

    def eval_passes(self, with_production: bool) -> int:
        return 2 + int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.chat import evaluate_chat

        result = evaluate_chat(ctx)
        if ctx.task.eval.judge:
            from tuneloom.evaluate.judge import judge_sides

            result["judge"] = judge_sides(result, ctx.task.eval.judge)
        return result

    def baselines(self, ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
        from tuneloom.evaluate.baselines import chat_baselines

        return chat_baselines(ctx, scored)

    def feedback_rows(self, task: TaskConfig, item: FeedbackItem) -> FeedbackRows:
        from tuneloom.feedback.convert import sft_rows

        return sft_rows(task, item)


KIND = ChatSft()
