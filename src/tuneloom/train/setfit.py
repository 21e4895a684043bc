"""The SetFit recipe: contrastive sentence pairs tune the encoder, then logistic regression on its embeddings.

Tunstall et al. 2022 (SetFit): pairs of labelled examples, same label -> cosine similarity 1, different
-> 0, trained with a squared-error loss on the pooled embeddings; then a logistic regression on the tuned
embeddings. The contrastive phase is sentence-transformers' own: its `SentenceTransformerTrainer` (a
transformers Trainer, so the shared loop's checkpoints, resume and logging apply) with
`CosineSimilarityLoss`, the loss SetFit trains with. The `setfit` package itself works here (1.2.0 with
sentence-transformers 6 and transformers 5) but is not used: it saves its head with joblib (pickle), its
Trainer is not a transformers Trainer, and its body training is this same trainer and loss. Only the pair
sampling is ours (`make_pairs`: SetFit's alternating positive/negative pairs, a few lines; sentence-transformers
has no sampler for labelled single texts). The regression's weights are copied into a `PooledClassifier`'s
linear layer on the tuned encoder and saved as plain safetensors (never pickle).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneloom.pooled_head import PooledClassifier, copy_logistic_head

MAX_PAIRS = 10_000  # pairs in all, whatever the data size (one pass over them is the contrastive phase)
VALIDATION_PAIRS = 4  # pairs per validation example, for the validation loss
C_GRID = (0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried for the head, by cross-validation


def pairs_per_example(n_examples: int, per_class: float, requested: int | None) -> int:
    """`train.setfit_pairs`, else 20 with up to 32 examples per class, fewer above (SetFit's 20 iterations)."""
    wanted = requested or max(2, min(20, int(640 // max(per_class, 1))))
    return max(1, min(wanted, MAX_PAIRS // max(n_examples, 1)))


def make_pairs(rows: list[dict[str, Any]], per_example: int, seed: int) -> list[dict[str, Any]]:
    """`per_example` pairs for each row (`text`, `label`), alternating a same-label and a different-label
    partner: sentence-transformers' pair columns (sentence1, sentence2) and the target similarity (label)."""
    rng = random.Random(seed)
    by_label: dict[Any, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["label"]].append(i)
    pairs = []
    for i, row in enumerate(rows):
        same = [j for j in by_label[row["label"]] if j != i] or [i]
        other = [j for label, idx in by_label.items() if label != row["label"] for j in idx]
        for k in range(per_example):
            positive = k % 2 == 0 or not other
            j = rng.choice(same if positive else other)
            pairs.append({"sentence1": row["text"], "sentence2": rows[j]["text"], "label": float(positive)})
    rng.shuffle(pairs)
    return pairs


def sentence_model(model_path: Path, pooling: tuple[str, bool], max_length: int, trust_remote_code: bool) -> Any:
    """A SentenceTransformer of the encoder in `model_path` with `pooling` (mode, normalize), in fp32."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    remote = {"trust_remote_code": trust_remote_code}
    transformer = Transformer(
        str(model_path),
        max_seq_length=max_length,
        model_kwargs={"dtype": torch.float32, **remote},
        processor_kwargs=remote,
        config_kwargs=remote,
    )
    dim = transformer.get_embedding_dimension()
    modules = [transformer, Pooling(dim, pooling_mode=pooling[0]), *([Normalize()] if pooling[1] else [])]
    return SentenceTransformer(modules=modules)


def trainer_class() -> type:
    """sentence-transformers' Trainer with SetFit's loss (CosineSimilarityLoss), built as the shared loop builds
    every trainer."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    class PairTrainer(SentenceTransformerTrainer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(loss=CosineSimilarityLoss(kwargs["model"]), **kwargs)

    return PairTrainer


@torch.inference_mode()
def embed_rows(model: PooledClassifier, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int = 64) -> np.ndarray:
    """The pooled embeddings of encoded rows (`input_ids`), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(rows), batch_size):
        batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows[start : start + batch_size]], return_tensors="pt")
        out.append(model.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def fit_head(
    model: PooledClassifier, tokenizer: Any, train: list[dict[str, Any]], validation: list[dict[str, Any]], seed: int
) -> float:
    """Logistic regression on the embeddings of `train`, copied into `model.classifier`; returns its C.

    C is chosen by stratified cross-validation over train + validation (a few-shot validation split
    alone is too small to tell strengths apart); the regression is fitted on train.
    """
    from sklearn.linear_model import LogisticRegression

    x, y = embed_rows(model, tokenizer, train), np.array([r["labels"] for r in train])
    pool_x = np.concatenate([x, embed_rows(model, tokenizer, validation)]) if validation else x
    pool_y = np.concatenate([y, [r["labels"] for r in validation]]) if validation else y
    if len(np.unique(y)) < 2:  # one class to learn: predict it
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(-1e4).index_fill_(0, torch.tensor(int(y[0]) if len(y) else 0), 0.0)
        return 0.0
    c = choose_c(pool_x, pool_y, seed)
    head = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x, y)
    copy_logistic_head(model.classifier, head, len(model.labels))
    return c


def choose_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The C of `C_GRID` with the best cross-validated accuracy (the larger on ties); 10 when a class has one example."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = min(5, int(np.bincount(y)[np.unique(y)].min()))
    if folds < 2:
        return 10.0
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = [cross_val_score(LogisticRegression(C=c, max_iter=3000, random_state=seed), x, y, cv=cv).mean() for c in C_GRID]
    return max(zip(scores, C_GRID))[1]
