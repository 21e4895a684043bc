"""The `method`, `train` and `search` sections of a task: how the weights change and how training runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tuneloom.config.base import Strict


class MethodConfig(Strict):
    """How the weights change: all of them (full), a LoRA/DoRA adapter, or an adapter on a 4-bit base (qlora)."""

    kind: Literal["full", "lora", "dora", "qlora"] = Field(
        "lora", description="full, lora, dora (LoRA with weight decomposition) or qlora (LoRA on an NF4 base)."
    )
    r: Annotated[int, Field(gt=0, le=1024)] = Field(16, description="Adapters: LoRA rank (size of the low-rank update).")
    alpha: Annotated[float, Field(gt=0)] = Field(32, description="Adapters: LoRA scaling; the update is scaled by alpha/r.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.05, description="Adapters: dropout on the LoRA input.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA: scale adapters by alpha/sqrt(r) instead of alpha/r.")
    target_modules: str | list[str] = Field("all-linear", description="Module names to adapt, or 'all-linear'.")
    merge: bool = Field(
        False, description="Adapters: also save the base with the adapter merged in (model-merged/, safetensors)."
    )

    @model_validator(mode="after")
    def _adapter_options(self) -> MethodConfig:
        if self.kind == "full" and self.merge:
            raise ValueError("method.merge applies to adapters (lora, dora, qlora); full fine-tuning saves whole weights")
        return self


class TrainConfig(Strict):
    epochs: Annotated[float, Field(gt=0)] = Field(3, description="Passes over the training split (may be fractional).")
    max_steps: Annotated[int, Field(gt=0)] | None = None
    lr: Annotated[float, Field(gt=0, lt=1)] = Field(2e-4, description="Peak learning rate.")
    batch_size: Annotated[int, Field(gt=0, le=65536)] = Field(8, description="Examples per forward pass on each process.")
    grad_accum: Annotated[int, Field(gt=0)] = Field(
        1, description="Forward passes per optimizer step; the effective batch is batch_size x grad_accum x processes."
    )
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.05, description="Share of the optimizer steps over which the learning rate rises from 0 to lr."
    )
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="How the learning rate changes after warmup."
    )
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay.")
    max_length: Annotated[int, Field(gt=8)] = Field(
        512, description="Longest example in tokens; longer ones are truncated (or rejected: data.over_length)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Training dtype; auto: bf16 where the hardware computes it natively, else fp32."
    )
    packing: bool | None = Field(
        None,
        description="chat_sft/pretrain: padding-free batches (examples concatenated, positions restart per example); "
        "default: on for pretrain, off for chat_sft.",
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass: less memory, slower.")
    attention: Literal["auto", "eager", "sdpa"] = Field(
        "auto",
        description="Attention kernel for decoder training (chat_sft, pretrain, preference). auto: eager (plain matmul + softmax) on a CPU when no "
        "training example is longer than 256 tokens and batches are not packed, where it is about twice as fast "
        "as sdpa's flash kernel; sdpa otherwise.",
    )
    eval_every: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Validation loss every N optimizer steps (default: about 6 times per run)."
    )
    save_every: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Checkpoint (for --resume) every N optimizer steps (default: at every validation)."
    )
    keep_checkpoints: Annotated[int, Field(ge=1)] = Field(2, description="How many recent checkpoints to keep.")
    early_stopping_patience: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Stop after this many validations without a lower validation loss (default: never)."
    )
    early_stopping_threshold: Annotated[float, Field(ge=0)] = Field(
        0.0, description="How much lower the validation loss must be to count as better."
    )
    keep_best: bool = Field(False, description="At the end, keep the weights of the checkpoint with the lowest validation loss.")
    seed: int = Field(42, description="Random seed for weight initialisation, shuffling and dropout.")
    class_weights: Literal["balanced", "none"] = Field(
        "balanced", description="Classification: weight the loss by inverse class frequency (rare queues count)."
    )
    recipe: Literal["head", "setfit", "auto"] = Field(
        "head",
        description="Classification: how the classifier is trained. head: a head trained with cross-entropy (on mean-pooled "
        "embeddings when the encoder is a sentence-transformers model, on the model's own pooler otherwise); setfit: "
        "contrastive sentence pairs from the labelled examples tune the encoder, then a logistic-regression head; auto: "
        "with fewer than 50 examples per class, train each recipe, keep the best on the validation split.",
    )
    recipe_budget: Annotated[int, Field(gt=0)] = Field(
        900, description="recipe auto: seconds for trying recipes; a recipe not started within them is skipped."
    )
    setfit_pairs: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="recipe setfit: sentence pairs per training example (half same-label; default: 20 with up to 32 "
        "examples per class, fewer above, at most 10,000 pairs in all).",
    )
    preference_loss: Literal["dpo", "kto"] = Field(
        "dpo", description="Preference tasks: DPO on the pairs, or KTO on them unpaired (chosen good, rejected bad)."
    )
    beta: Annotated[float, Field(gt=0)] = Field(
        0.1, description="Preference tasks: how far the policy may move from the base (higher = closer)."
    )

    @model_validator(mode="after")
    def _checkpoints(self) -> TrainConfig:
        if self.preference_loss == "kto" and self.batch_size < 2:
            raise ValueError("KTO estimates its KL term within a batch: train.batch_size must be at least 2")
        if self.eval_every and self.save_every and (self.keep_best or self.early_stopping_patience):
            if self.save_every % self.eval_every:
                raise ValueError(
                    f"keep_best and early stopping pick checkpoints by validation loss: save_every ({self.save_every}) "
                    f"must be a multiple of eval_every ({self.eval_every})"
                )
        return self


class FloatRange(Strict):
    """A float range to sample from; `log: true` samples log-uniformly (learning rates)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self


class IntRange(Strict):
    low: Annotated[int, Field(gt=0)]
    high: Annotated[int, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


Choices = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]


class SearchConfig(Strict):
    """`tuneloom train --search N`: an Optuna study minimising validation loss over these settings."""

    lr: FloatRange | None = Field(None, description="Learning rate range, e.g. {low: 1e-5, high: 1e-3, log: true}.")
    r: Choices | None = Field(None, description="LoRA ranks to try (alpha keeps its ratio to r).")
    batch_size: Choices | None = None
    epochs: IntRange | None = None
    dropout: FloatRange | None = None
    weight_decay: FloatRange | None = None
    warmup_ratio: FloatRange | None = None
    storage: str | None = Field(
        None,
        pattern=r"^(sqlite|postgresql|postgresql\+\w+|mysql|mysql\+\w+)://",
        description="Optuna storage URL shared by several machines (postgresql://...); default: optuna.db in the workspace.",
    )
    study: str | None = Field(None, description="Study name (default: the task name); trials accumulate across calls.")
    pruning: bool = Field(True, description="Stop trials whose validation loss is worse than the median at the same step.")

    def params(self) -> list[str]:
        return [k for k in SEARCH_PARAMS if getattr(self, k) is not None]


SEARCH_PARAMS = ("lr", "r", "batch_size", "epochs", "dropout", "weight_decay", "warmup_ratio")
