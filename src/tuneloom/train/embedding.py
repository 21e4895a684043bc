"""Embedder fine-tuning on sentence-transformers: the task's knowledge base and data become (query, passage,
hard negatives) rows, trained with MultipleNegativesRankingLoss (optionally inside MatryoshkaLoss), LoRA or full.

The shared training loop (`tuneloom.train`) drives sentence-transformers' own Trainer (a transformers Trainer that
takes a loss), so checkpoints, resume, logging and status work as for every other task. LoRA adapters are peft's,
put on the underlying transformer and merged before saving: the run's `model/` is a plain sentence-transformers
folder (safetensors) that any index can load without peft.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloom.artifacts import DatasetManifest, EmbedderCard, write_embedder_card
from tuneloom.config import EmbeddingConfig, TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.records import Chunk, IndexMeta
from tuneloom.train.common import TaskParts, lora_config
from tuneloom.train.embedding_pairs import Linking, Pair, document_pairs, link_rows, mine_negatives, pseudo_queries


class KnowledgeBaseMissing(TuneloomError):
    """The knowledge base an embedding task names cannot be opened."""


@dataclass(frozen=True)
class Corpus:
    """A knowledge base's chunks and what its index was built with."""

    name: str
    chunks: list[Chunk]
    meta: IndexMeta | None


def load_corpus(project_file: str | Path, name: str) -> Corpus:
    """Every chunk of the knowledge base `name` of the project at `project_file`, in document order.

    Read from the store directly: training needs the chunks' text, not the index's embedder loaded for searching.
    """
    from tuneloom.config import load_project
    from tuneloom.knowledge import store_for

    if not project_file:
        raise KnowledgeBaseMissing("the dataset was prepared by an older Tuneloom: run `tuneloom data prepare` again")
    project = load_project(Path(project_file))
    store = store_for(project.config.knowledge_base(name), project.workspace)
    try:
        meta = store.meta()
        if meta is None:
            raise KnowledgeBaseMissing(f"knowledge base '{name}' has no index yet: run `tuneloom index build {name}`")
        chunks = sorted(store.chunks(), key=lambda c: (c.doc_id, c.position))
    finally:
        store.close()
    return Corpus(name, chunks, meta)


def load_embedder(path: str | Path, trust_remote_code: bool = False) -> Any:
    """A sentence-transformers model from a local folder (a plain transformers encoder gets mean pooling)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), local_files_only=True, trust_remote_code=trust_remote_code)


def settings(task: TaskConfig) -> EmbeddingConfig:
    return task.embedding or EmbeddingConfig()


def row_pairs(rows: list[dict[str, Any]], chunks: list[Chunk], model: Any, cfg: EmbeddingConfig) -> Linking:
    """The pairs rows give: document rows their documents' pseudo-queries, question rows their linked chunk."""
    if not chunks:
        raise ValueError("the knowledge base has no chunks: build it before training or evaluating its embedder")
    if rows and "document" in rows[0]:
        return document_pairs(rows, chunks)
    return link_rows(rows, chunks, model, cfg.link_threshold) if rows else Linking()


def build_pairs(rows: list[dict[str, Any]], chunks: list[Chunk], model: Any, cfg: EmbeddingConfig) -> tuple[list[Pair], Linking]:
    """The rows' pairs, plus pseudo-queries from every chunk when `embedding.pseudo_queries` asks for them."""
    linking = row_pairs(rows, chunks, model, cfg)
    extra = cfg.pseudo_queries and not (rows and "document" in rows[0])
    pairs = linking.pairs + (pseudo_queries(chunks) if extra else [])
    if not pairs:
        raise ValueError(
            f"no training pairs: {len(linking.unlinked)} rows were unlinked (no chunk of the knowledge base grounds "
            f"them: answers under embedding.link_threshold {cfg.link_threshold}, or documents it does not hold) and "
            f"embedding.pseudo_queries is off; lower the threshold or set embedding.pseudo_queries: true"
        )
    return pairs, linking


def _loss_factory(cfg: EmbeddingConfig, dim: int) -> Any:
    """MultipleNegativesRankingLoss, inside MatryoshkaLoss when embedding.matryoshka_dims is set."""
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    dims = cfg.matryoshka_dims
    if dims and dims[0] > dim:
        raise ValueError(f"embedding.matryoshka_dims: {dims[0]} is larger than the embedder's {dim} dimensions")

    def make(model: Any) -> Any:
        loss = MultipleNegativesRankingLoss(model)
        return MatryoshkaLoss(model, loss, matryoshka_dims=dims) if dims else loss

    return make


def _trainer_class(loss: Any) -> type:
    """sentence-transformers' Trainer with our loss, built the way the shared loop builds every trainer."""
    from sentence_transformers import SentenceTransformerTrainer

    class EmbeddingTrainer(SentenceTransformerTrainer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(loss=loss, **kwargs)

    return EmbeddingTrainer


def _save(card: EmbedderCard, window: int | None) -> Any:
    def save(model: Any, model_dir: Path) -> None:
        """Merge a LoRA adapter into the transformer, then save a plain sentence-transformers folder that keeps the
        base's window (train.max_length only cut the training texts; the index embeds whole chunks)."""
        from peft import PeftModel

        if isinstance(model[0].model, PeftModel):
            model[0].model = model[0].model.merge_and_unload()
        model.max_seq_length = window
        model.save(str(model_dir), safe_serialization=True, create_model_card=False)
        write_embedder_card(model_dir, card)

    return save


def prepare(
    task: TaskConfig,
    model_path: Path,
    precision: str,
    manifest: DatasetManifest,
    train: list[dict[str, Any]],
    validation: list[dict[str, Any]],
    corpus: Corpus | None = None,
) -> TaskParts:
    """Pairs, mined negatives, the (LoRA) model and sentence-transformers' trainer pieces for the shared loop."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    cfg = settings(task)
    corpus = corpus or load_corpus(manifest.project_file, task.knowledge or "")
    model = load_embedder(model_path, task.trust_remote_code)
    window = model.max_seq_length
    model.max_seq_length = min(task.train.max_length, window or task.train.max_length)
    pairs, linking = build_pairs(train, corpus.chunks, model, cfg)
    val_pairs = row_pairs(validation, corpus.chunks, model, cfg).pairs
    texts = [c.text for c in corpus.chunks]
    train_rows, val_rows = (
        mine_negatives(p, texts, model, cfg.hard_negatives, cfg.duplicate_threshold, task.train.seed) for p in (pairs, val_pairs)
    )
    if task.method.kind != "full":
        from peft import get_peft_model

        model[0].model = get_peft_model(model[0].model, lora_config(task.method, "FEATURE_EXTRACTION"))
    counts = Counter(p.origin for p in pairs)
    card = EmbedderCard(
        knowledge_base=corpus.name,
        base_embedder=task.model,
        index_embedder=corpus.meta.embedder if corpus.meta else "",
        content_version=corpus.meta.content_version if corpus.meta else "",
        chunks=len(corpus.chunks),
        pairs=dict(counts),
        unlinked=len(linking.unlinked),
        unlinked_ids=[row_id for row_id, _ in linking.unlinked[:50]],
        hard_negatives=cfg.hard_negatives,
        matryoshka_dims=cfg.matryoshka_dims,
    )
    notes = [f"embedding pairs: {dict(counts)}; {len(linking.unlinked)} question rows unlinked (left out)"]
    return TaskParts(
        tokenizer=model.tokenizer,
        model=model,
        train=train_rows,
        validation=val_rows,
        notes=notes,
        trainer_class=_trainer_class(_loss_factory(cfg, model.get_embedding_dimension() or 0)),
        args_class=SentenceTransformerTrainingArguments,
        # a duplicate text in a batch would be a false in-batch negative; the Trainer's token count reads `input_ids`,
        # which sentence-transformers' batches name per column (anchor_input_ids...), so it is off
        extra_args={"batch_sampler": "no_duplicates", "include_num_input_tokens_seen": "no"},
        save=_save(card, window),
    )
