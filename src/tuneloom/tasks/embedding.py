"""embedding: tune a sentence embedder for a knowledge base, on its questions, query/passage pairs or its structure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.tasks.base import Built, EvalContext, Example, KindDefaults

if TYPE_CHECKING:
    from tuneloom.artifacts import DatasetManifest
    from tuneloom.config import DataConfig, TaskConfig
    from tuneloom.data.clean import Cleaner
    from tuneloom.train.common import TaskParts


class Embedding(KindDefaults):
    name = "embedding"
    summary = "Sentence-embedder fine-tuning for a knowledge base: from its questions, query/passage pairs or its documents."
    required_columns: tuple[str, ...] = ()
    allowed_columns = frozenset({"prompt", "response", "passage", "text"})
    # dense (the embedder alone), then hybrid (fused with the knowledge base's keyword search): evaluate/retrieval.py
    metrics = (
        *("ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10"),
        *("hybrid_ndcg_at_10", "hybrid_recall_at_1", "hybrid_recall_at_5", "hybrid_recall_at_10", "hybrid_mrr_at_10"),
    )
    head = "sentence_embedding"
    scout_quality = "probe"
    trains_embedder = True
    takes_knowledge = True

    def check_config(self, task: TaskConfig) -> None:
        cols = task.data.columns
        if not task.knowledge:
            raise ValueError("embedding tasks name the knowledge base whose embedder they tune: set `knowledge: <name>`")
        if cols.text and (cols.prompt or cols.response or cols.passage):
            raise ValueError(
                "embedding data are either documents (data.columns.text alone: pseudo-queries from their structure) "
                "or queries (data.columns.prompt with response or passage), not both"
            )
        if not cols.text and not (cols.prompt and bool(cols.response) != bool(cols.passage)):
            raise ValueError(
                "embedding needs data.columns.prompt with exactly one of data.columns.response (answers, linked to the "
                "chunk that grounds them) or data.columns.passage (the passage that answers each query); or "
                "data.columns.text alone for the knowledge base's documents"
            )
        if task.method.merge:
            raise ValueError("method.merge does not apply to embedding tasks: their adapter is always merged into model/")

    def build_example(self, data: DataConfig, record: dict[str, Any], clean: Cleaner) -> Built:
        cols = data.columns
        if cols.text:
            text = "\n\n".join(t for t in (clean.text(record.get(c) or "") for c in cols.text_columns()) if t)
            return ({"text": text, "document": str(record.get("file") or "")}, None) if text else (None, "empty_text")
        query = clean.text(record.get(cols.prompt or "") or "")
        if not query:
            return None, "empty_query"
        role = "passage" if cols.passage else "answer"
        evidence = clean.text(record.get(cols.passage or cols.response or "") or "")
        if not evidence:
            return None, f"empty_{role}"
        return {"query": query, role: evidence}, None

    def measure_tokens(self, examples: list[Example], tokenizer: Any) -> None:
        lengths = tokenizer([e.get("query") or e["text"] for e in examples])["input_ids"]
        for e, ids in zip(examples, lengths):
            e["_tokens"] = len(ids)

    def training_parts(
        self,
        task: TaskConfig,
        model_path: Path,
        precision: str,
        manifest: DatasetManifest,
        train: list[Example],
        validation: list[Example],
    ) -> TaskParts:
        from tuneloom.train import embedding

        return embedding.prepare(task, model_path, precision, manifest, train, validation)

    def eval_passes(self, with_production: bool) -> int:
        return 2 + int(with_production)

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        from tuneloom.evaluate.retrieval import evaluate_retrieval

        return evaluate_retrieval(ctx)


KIND = Embedding()
