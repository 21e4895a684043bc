"""The SetFit recipe: contrastive sentence pairs tune the encoder, then logistic regression on its embeddings.

Tunstall et al. 2022 (SetFit): pairs of labelled examples, same label -> cosine similarity 1, different
-> 0, trained with a squared-error loss on the pooled embeddings; then a logistic regression on the tuned
embeddings. sentence-transformers is not installed with Tuneloom (it is on the index, but brings its own
model classes and trainer): the pair loss is six lines of torch here, so the encoder stays the
`PooledClassifier` that LoRA, checkpoints, resume and `tuneloom.inference` already handle. The regression's
weights are copied into the classifier's linear layer and saved as plain safetensors (never pickle).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, Trainer

from tuneloom.pooled_head import PooledClassifier

MAX_PAIRS = 10_000  # pairs in all, whatever the data size (one pass over them is the contrastive phase)
VALIDATION_PAIRS = 4  # pairs per validation example, for the validation loss
C_GRID = (0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried for the head, by cross-validation


def pairs_per_example(n_examples: int, per_class: float, requested: int | None) -> int:
    """`train.setfit_pairs`, else 20 with up to 32 examples per class, fewer above (SetFit's 20 iterations)."""
    wanted = requested or max(2, min(20, int(640 // max(per_class, 1))))
    return max(1, min(wanted, MAX_PAIRS // max(n_examples, 1)))


def make_pairs(encoded: list[dict[str, Any]], per_example: int, seed: int) -> list[dict[str, Any]]:
    """`per_example` pairs for each example, alternating a same-label and a different-label partner."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(encoded):
        by_label[row["labels"]].append(i)
    pairs = []
    for i, row in enumerate(encoded):
        same = [j for j in by_label[row["labels"]] if j != i] or [i]
        other = [j for label, idx in by_label.items() if label != row["labels"] for j in idx]
        for k in range(per_example):
            positive = k % 2 == 0 or not other
            j = rng.choice(same if positive else other)
            pairs.append({"input_ids": row["input_ids"], "pair_ids": encoded[j]["input_ids"], "labels": float(positive)})
    rng.shuffle(pairs)
    return pairs


class PairCollator:
    """A batch of B pairs as 2B padded sequences (the first texts, then their partners) and B targets."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [{"input_ids": r["input_ids"]} for r in rows] + [{"input_ids": r["pair_ids"]} for r in rows]
        batch = self.tokenizer.pad(texts, padding=True, pad_to_multiple_of=8, return_tensors="pt")
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": torch.tensor([r["labels"] for r in rows]),
        }


class PairTrainer(Trainer):
    """Trains on the cosine similarity of pair embeddings (CosineSimilarityLoss: squared error to 1 or 0)."""

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        embeddings = getattr(model, "module", model).embed(inputs["input_ids"], inputs["attention_mask"])
        first, second = embeddings.chunk(2)
        similarity = torch.nn.functional.cosine_similarity(first, second)
        loss = torch.nn.functional.mse_loss(similarity, inputs["labels"].float())
        return (loss, {"logits": similarity}) if return_outputs else loss


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
    _copy_into(model.classifier, head, len(model.labels))
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


def _copy_into(linear: torch.nn.Linear, head: Any, n_labels: int) -> None:
    """The regression's weights as the linear layer's (softmax over the layer = the regression's probabilities)."""
    weight = np.zeros((n_labels, head.coef_.shape[1]), dtype=np.float32)
    bias = np.full(n_labels, -1e4, dtype=np.float32)  # a class absent from training is never predicted
    classes = [int(c) for c in head.classes_]
    if len(classes) == 2:  # one logit z for classes_[1]: softmax([-z/2, z/2]) = sigmoid(z)
        coef, intercept = head.coef_[0] / 2, head.intercept_[0] / 2
        weight[classes[0]], bias[classes[0]] = -coef, -intercept
        weight[classes[1]], bias[classes[1]] = coef, intercept
    else:
        for row, label in enumerate(classes):
            weight[label], bias[label] = head.coef_[row], head.intercept_[row]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
