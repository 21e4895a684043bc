"""The project file (`tuneloom.yaml`): pydantic models, loading, and readable errors.

One source of truth for the CLI and the Python API. Every model forbids unknown keys; a
wrong file raises `ProjectFileError`, whose message names the field path, the YAML line,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneloom.catalog.entries import CATALOG
from tuneloom.errors import ProjectFileError
from tuneloom.tasks import kind_names, kind_of
from tuneloom.tasks import rules
from tuneloom.tasks.base import LOWER_IS_BETTER  # noqa: F401  # re-exported for callers written before tuneloom.tasks


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


BUILTIN_TASK_TYPES = ("chat_sft", "classification", "ner", "preference", "pretrain")  # for the schema; see tuneloom.tasks


SourceFormat = Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "xlsx", "text", "pdf", "docx", "html"]


class SourceConfig(Strict):
    """One input file or folder of files, relative to the project file.

    Tables (CSV, TSV, JSON, JSONL, Parquet, xlsx) give one row per record; documents (text,
    Markdown, PDF, DOCX, HTML) give one row per file with the columns `text` and `file`.
    """

    path: str
    format: SourceFormat = Field("auto", description="Default: from the file extension.")
    encoding: str | None = Field(None, description="Text encoding of CSV/TSV/text files (default: detected).")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="CSV delimiter (default: detected).")
    sheet: str | int | None = Field(None, description="xlsx: sheet name or 0-based index (default: the first).")
    label_from_folder: bool = Field(
        False, description="Folder source: each file's sub-folder name becomes its `label` column."
    )


class ColumnsConfig(Strict):
    """Which source columns play which role."""

    prompt: str | None = Field(None, description="chat_sft / preference: the user's message.")
    response: str | None = Field(None, description="chat_sft: the assistant's answer.")
    messages: str | None = Field(None, description="chat_sft: a column holding an OpenAI-format list of messages.")
    text: str | list[str] | None = Field(
        None, description="Input text; a list of columns is joined with blank lines (e.g. subject and body)."
    )
    label: str | None = Field(None, description="classification: the class (several with data.multi_label).")
    entities: str | None = Field(
        None, description="ner: a list of {start, end, label} character spans (end exclusive) into the text."
    )
    chosen: str | None = Field(None, description="preference: the better answer.")
    rejected: str | None = Field(None, description="preference: the worse answer.")
    group: str | None = Field(None, description="Rows sharing this value (customer, thread) land in one split.")
    split: str | None = Field(None, description="A column holding train / validation / test: the user's own split.")
    slice: str | None = Field(None, description="Optional column to report results by (e.g. topic, product).")

    def required(self) -> list[str]:
        cols: list[str] = []
        for value in (self.prompt, self.response, self.messages, self.label, self.entities, self.chosen,
                      self.rejected, self.group, self.split, self.slice):
            if value:
                cols.append(value)
        if isinstance(self.text, str):
            cols.append(self.text)
        elif self.text:
            cols.extend(self.text)
        return cols

    def text_columns(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text or [])


class SplitConfig(Strict):
    validation: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    seed: int = 42

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation ({self.validation}) + test ({self.test}) must leave at least 10% for training"
            )
        return self


class BoilerplateRule(Strict):
    """A regular expression (Python syntax, multi-line mode) and what to do where it matches."""

    pattern: str
    action: Literal["cut_from", "remove"] = Field(
        "remove", description="remove: delete each match; cut_from: delete from the match to the end (signatures, quoted replies)."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class CleanConfig(Strict):
    """Text cleaning and quality filters (Unicode NFC and whitespace normalisation always run)."""

    html_to_text: bool = Field(True, description="Turn HTML markup found in text cells into plain text.")
    boilerplate: list[BoilerplateRule] = Field(
        default_factory=list, description="Rules removing signatures, quoted replies and disclaimers."
    )
    default_boilerplate: bool = Field(
        False, description="Also apply Tuneloom's built-in rules for e-mail signatures, quoted replies and disclaimers."
    )
    max_symbol_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Reject text whose share of characters that are neither letters, digits nor spaces is higher."
    )
    max_repeated_line_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Reject text in which a higher share of its non-empty lines are repeats."
    )
    languages: list[str] | None = Field(
        None, description="Keep only text detected (langdetect) as one of these ISO 639-1 codes, e.g. [en, de]."
    )


class DedupConfig(Strict):
    exact: bool = True
    near: bool = Field(True, description="Near duplicates by MinHash LSH (datasketch).")
    threshold: Annotated[float, Field(gt=0, lt=1)] = Field(0.8, description="Estimated Jaccard similarity of word 5-grams.")
    num_perm: Annotated[int, Field(ge=16, le=512)] = 128
    shingle: Annotated[int, Field(ge=1, le=10)] = Field(5, description="Words per shingle.")


PiiType = Literal["email", "phone", "iban", "card", "ip", "postal_code", "id_number", "person"]


class RedactConfig(Strict):
    """Personal data replaced by typed placeholders (<EMAIL_1>...), the same token for the same value in one example."""

    enabled: bool = False
    types: list[PiiType] = Field(
        default_factory=lambda: ["email", "phone", "iban", "card", "ip", "postal_code", "id_number"],
        description="What to redact; 'person' needs ner_model.",
    )
    ner_model: str | None = Field(
        None, description="Local token-classification model folder (PER entities) for redacting person names."
    )
    keep_originals: bool = Field(
        False, description="Write the originals with their placeholders to redactions.jsonl (sensitive!)."
    )

    @model_validator(mode="after")
    def _person_needs_model(self) -> RedactConfig:
        if self.enabled and "person" in self.types and not self.ner_model:
            raise ValueError("redact.types has 'person', which needs redact.ner_model (a local token-classification model folder)")
        return self


class DataConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    columns: ColumnsConfig
    system_prompt: str | None = Field(None, description="Chat tasks: system message put before every example.")
    min_chars: Annotated[int, Field(ge=0)] = 1
    max_chars: Annotated[int, Field(gt=0)] = 20_000
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    redact: RedactConfig = RedactConfig()
    over_length: Literal["truncate", "reject"] = Field(
        "truncate", description="Examples longer than train.max_length tokens: truncated in training, or rejected here."
    )
    token_stats: bool = Field(True, description="Token-length statistics with the model's tokenizer (when it is available offline).")
    rare_class_min: Annotated[int, Field(ge=1)] = Field(10, description="Warn about classes with fewer examples than this.")
    workers: Annotated[int, Field(ge=1, le=64)] | None = Field(None, description="Processes for cleaning and hashing (default: CPU count).")
    split: SplitConfig = SplitConfig()
    multi_label: bool = Field(False, description="Classification: a row may carry several labels.")
    label_separator: str = Field(
        ",", min_length=1, description="Multi-label: how several labels are written in one cell (a JSON list cell also works)."
    )


class MethodConfig(Strict):
    """How the weights change: all of them (full), a LoRA/DoRA adapter, or an adapter on a 4-bit base (qlora)."""

    kind: Literal["full", "lora", "dora", "qlora"] = Field(
        "lora", description="full, lora, dora (LoRA with weight decomposition) or qlora (LoRA on an NF4 base)."
    )
    r: Annotated[int, Field(gt=0, le=1024)] = 16
    alpha: Annotated[float, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    rslora: bool = Field(False, description="Rank-stabilised LoRA: scale adapters by alpha/sqrt(r) instead of alpha/r.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    merge: bool = Field(
        False, description="Adapters: also save the base with the adapter merged in (model-merged/, safetensors)."
    )

    @model_validator(mode="after")
    def _adapter_options(self) -> MethodConfig:
        if self.kind == "full" and self.merge:
            raise ValueError("method.merge applies to adapters (lora, dora, qlora); full fine-tuning saves whole weights")
        return self


class TrainConfig(Strict):
    epochs: Annotated[float, Field(gt=0)] = 3
    max_steps: Annotated[int, Field(gt=0)] | None = None
    lr: Annotated[float, Field(gt=0, lt=1)] = 2e-4
    batch_size: Annotated[int, Field(gt=0)] = 8
    grad_accum: Annotated[int, Field(gt=0)] = 1
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_length: Annotated[int, Field(gt=8)] = 512
    precision: Literal["auto", "fp32", "bf16"] = "auto"
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
    seed: int = 42
    class_weights: Literal["balanced", "none"] = Field(
        "balanced", description="Classification: weight the loss by inverse class frequency (rare queues count)."
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
        None, pattern=r"^(sqlite|postgresql|postgresql\+\w+|mysql|mysql\+\w+)://",
        description="Optuna storage URL shared by several machines (postgresql://...); default: optuna.db in the workspace.",
    )
    study: str | None = Field(None, description="Study name (default: the task name); trials accumulate across calls.")
    pruning: bool = Field(True, description="Stop trials whose validation loss is worse than the median at the same step.")

    def params(self) -> list[str]:
        return [k for k in SEARCH_PARAMS if getattr(self, k) is not None]


SEARCH_PARAMS = ("lr", "r", "batch_size", "epochs", "dropout", "weight_decay", "warmup_ratio")


DEFAULT_RUBRIC = (
    "5: correct and complete, agrees with the reference in every point that matters. "
    "4: correct, with a minor omission or imprecision. "
    "3: partly correct, or correct but with a notable error or missing point. "
    "2: mostly wrong or unhelpful, with a little that is right. "
    "1: wrong, contradicts the reference, off-topic or empty."
)


class JudgeConfig(Strict):
    """A judge endpoint: any server that speaks the OpenAI chat-completions API.

    Used by `tuneloom.evaluate.judge`; the API key stays in the environment variable it names.
    """

    url: str = Field(
        pattern=r"^https?://",
        description="Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 ('/chat/completions' is appended).",
    )
    model: str = Field(min_length=1, description="Model name sent in each request.")
    rubric: str = Field(DEFAULT_RUBRIC, min_length=1, description="What each score from 1 to 5 means; goes into the system prompt.")
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the API key (the key itself never goes in the project file).",
    )
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_examples: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Judge at most the first N evaluated examples (each one is a request per model)."
    )


class EvalConfig(Strict):
    metrics: list[str] | None = Field(
        None, description="Subset of the task's metrics to show (default: all of them)."
    )
    max_new_tokens: Annotated[int, Field(gt=0, le=4096)] = 96
    max_examples: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Evaluate on at most N test examples (sampled with the split seed)."
    )
    batch_size: Annotated[int, Field(gt=0)] = 8
    forgetting_check: bool = Field(
        True, description="Chat tasks: also score base and tuned on Tuneloom's general-ability set (48 items)."
    )
    judge: JudgeConfig | None = Field(None, description="Chat tasks: an optional LLM-as-judge endpoint.")


class GateConfig(Strict):
    """Rules a tuned model must pass before it may be promoted (`tuneloom gate RUN`)."""

    min: dict[str, float] = Field(default_factory=dict, description="Metric -> lowest allowed value (highest for loss/perplexity).")
    max_drop: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> largest allowed drop against production (against base while nothing is in production).",
    )
    max_class_f1_drop: Annotated[float, Field(ge=0)] | None = Field(
        None, description="Classification: largest allowed per-class F1 drop against production (or base)."
    )
    max_latency_ms: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Largest allowed mean latency per test example of the tuned model."
    )
    max_forgetting: Annotated[float, Field(ge=0)] | None = Field(
        None, description="Chat: largest allowed drop of token F1 on the general-ability set (base minus tuned)."
    )


class TaskConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Lowercase id used for folders.")
    type: str = Field(
        json_schema_extra={"enum": list(BUILTIN_TASK_TYPES)},
        description="Task type: " + ", ".join(BUILTIN_TASK_TYPES) + " (or a registered task kind).",
    )
    model: str = Field(description="Catalog name, local model folder, or Hugging Face hub id.")
    trust_remote_code: bool = False
    data: DataConfig
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    search: SearchConfig | None = Field(None, description="Hyperparameter search space for `tuneloom train --search N`.")
    registry_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Registered model name for this task's versions (default: the task name).",
    )
    label_descriptions: dict[str, str] | None = Field(
        None, description="Classification: a short description per label, used for the zero-shot baseline."
    )

    @property
    def packs(self) -> bool:
        """Whether training batches are packed (train.packing, or its default for the task type)."""
        return self.train.packing if self.train.packing is not None else kind_of(self.type).packs_by_default

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in kind_names():
            names = [repr(k) for k in kind_names()]
            allowed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise ValueError(f"Input should be {allowed}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        """The rules that relate several settings, each a small named function, in a fixed order."""
        for rule in TASK_RULES:
            rule(self)
        return self


def check_validation_split(task: TaskConfig) -> None:
    if (task.train.keep_best or task.train.early_stopping_patience) and task.data.split.validation == 0:
        raise ValueError("train.keep_best and train.early_stopping_patience need a validation split (data.split.validation > 0)")


def check_catalog_model(task: TaskConfig) -> None:
    entry = CATALOG.get(task.model)
    if entry is None:
        return
    if task.type not in entry.tasks:
        raise ValueError(f"catalog model '{task.model}' cannot do {task.type}; it supports: {', '.join(sorted(entry.tasks))}")
    if task.method.kind == "qlora" and not entry.quantizable:
        raise ValueError(
            f"qlora needs a model whose linear layers bitsandbytes can quantize to 4 bits; "
            f"'{task.model}' is not one: use method.kind 'lora' or 'full'"
        )


def check_search_space(task: TaskConfig) -> None:
    if task.search is None:
        return
    if not task.search.params():
        raise ValueError(f"search: give at least one setting to vary: {', '.join(SEARCH_PARAMS)}")
    if task.search.r is not None and task.method.kind == "full":
        raise ValueError("search.r needs method.kind lora or qlora (full fine-tuning has no rank)")
    if task.data.split.validation == 0:
        raise ValueError("search minimises validation loss: data.split.validation must be above 0")


TASK_RULES = (
    rules.check_packing, check_validation_split, check_catalog_model, rules.check_qlora, rules.check_metric_names,
    check_search_space, rules.check_columns, rules.check_data_options, rules.check_kind_rules,
)


class RegistryConfig(Strict):
    """Where model versions are registered (MLflow model registry)."""

    uri: str | None = Field(
        None, description="MLflow tracking server URL; default: a SQLite registry file in the workspace (no network)."
    )


class TrackingConfig(Strict):
    """Every training run's params, metrics and artifacts go to MLflow (besides metrics.jsonl)."""

    mlflow: bool = Field(True, description="Log training runs to MLflow.")
    uri: str | None = Field(
        None, description="MLflow tracking server URL or database URI; default: registry.uri, else SQLite in the workspace (no network).",
    )
    log_model: bool = Field(True, description="Also log the run's model/ folder (adapter or weights) as an artifact.")


class ServedModelConfig(Strict):
    """A model served from a folder named in the project file (never from a path in a request)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Name clients use in `model`.")
    path: str = Field(description="A PEFT adapter folder or a full model folder, relative to the project file.")
    base: str | None = Field(None, description="Base model of an adapter (catalog name or folder); default: the adapter's own config.")
    system_prompt: str | None = Field(None, description="Prepended when a chat request has no system message.")


class ServeLimitsConfig(Strict):
    """Per-request limits; a request over one gets a 4xx answer naming the limit."""

    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body.")
    max_prompt_tokens: int = Field(2048, gt=0, description="Longest prompt after the chat template.")
    max_tokens: int = Field(512, gt=0, description="Largest max_tokens a request may ask for (also the default).")
    max_n: int = Field(4, gt=0, description="Largest n (choices per request).")
    max_inputs: int = Field(64, gt=0, description="Most texts in one embeddings or classify request.")


class ServeConfig(Strict):
    """`tuneloom serve`: the OpenAI-compatible server (defaults are safe for a laptop)."""

    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="auto: vLLM when it is installed and a GPU is present, else transformers.")
    auth: bool = Field(True, description="Require an API key (`tuneloom keys create`) on every /v1 request.")
    base_models: list[str] | None = Field(
        None, description="Catalog models served by name; default: the catalog models of the project's tasks.")
    models: list[ServedModelConfig] = Field(default_factory=list, description="Extra models from folders.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where computed natively.")
    torch_threads: int | None = Field(
        None, gt=0, description="CPU threads for the model; default: torch's. 1 is far faster on a CPU shared with other jobs.")
    max_batch_size: int = Field(8, gt=0, description="Sequences decoded together in one step.")
    max_queue: int = Field(64, ge=0, description="Requests waiting for a batch slot; beyond it: 429.")
    request_timeout_s: float = Field(120.0, gt=0, description="Longest a request may take, queueing included.")
    adapter_memory_mb: float = Field(512.0, gt=0, description="Budget for loaded adapters; least recently used go first.")
    alias_ttl_s: float = Field(2.0, ge=0, description="How long a resolved `name` / `name@alias` is reused.")
    shutdown_grace_s: float = Field(30.0, ge=0, description="On shutdown, how long running requests may finish.")
    feedback_db: str | None = Field(
        None, description="SQLAlchemy URL of the completion/feedback store; default: SQLite feedback.db in the workspace.")
    store_prompts: bool = Field(True, description="Store request messages and answers with each completion id.")
    log_prompts: bool = Field(False, description="Also write prompts to the server log (off: logs hold no prompts).")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty: CORS off.")
    redact: RedactConfig = Field(
        default_factory=RedactConfig,
        description="Personal data in stored requests and answers replaced by placeholders, as in data preparation.",
    )
    limits: ServeLimitsConfig = ServeLimitsConfig()


ScoutPrecision = Literal["fp32", "bf16", "int8", "nf4"]


class ScoutCandidate(Strict):
    """One candidate base model, optionally at its own precisions and with a display label."""

    model: str = Field(description="Catalog name, local model folder, or hub id (hub ids only once pulled).")
    precisions: list[ScoutPrecision] | None = Field(None, min_length=1, description="Default: scout.precisions.")
    label: str | None = Field(None, description="Name shown in the report (default: the model reference).")


class ScoutConstraints(Strict):
    """Limits a candidate must meet to be recommended; a candidate that breaks one is marked with the reason."""

    max_memory_gb: Annotated[float, Field(gt=0)] | None = Field(None, description="Largest measured peak memory.")
    max_latency_ms: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Largest latency of one request at batch 1 (chat: first token plus max_new_tokens decoded).",
    )
    licenses: list[str] | None = Field(None, description="Allowed licenses, e.g. [apache-2.0, mit]; 'unknown' fails.")
    min_context: Annotated[int, Field(gt=0)] | None = Field(None, description="Smallest allowed context window (tokens).")


class ScoutConfig(Strict):
    """`tuneloom scout`: candidate base models measured on this machine and the task's validation data."""

    candidates: list[str | ScoutCandidate] = Field(
        default_factory=list, description="Candidates for every task (a task listed under `tasks` uses its own list).",
    )
    tasks: dict[str, list[str | ScoutCandidate]] = Field(default_factory=dict, description="Task name -> candidates.")
    precisions: list[ScoutPrecision] = Field(["bf16"], min_length=1, description="Precisions of each candidate, one row each.")
    constraints: ScoutConstraints = ScoutConstraints()
    time_budget_s: Annotated[float, Field(gt=0)] = Field(
        900, description="Time for the whole scout; each candidate gets an equal share of what is left.",
    )
    few_shot: Annotated[int, Field(ge=0, le=16)] = Field(2, description="Chat: training examples shown before each question.")
    sample_size: Annotated[int, Field(gt=0)] = Field(32, description="Validation examples scored per candidate (sampled).")
    probe_train_size: Annotated[int, Field(gt=1)] = Field(
        200, description="Classification: training examples the linear probe on embeddings is fitted on.",
    )
    max_new_tokens: Annotated[int, Field(gt=0, le=1024)] = 48
    context_length: Annotated[int, Field(gt=8)] | None = Field(
        None, description="Inference context for the memory estimates (default: the task's train.max_length).",
    )
    domain_text: str | None = Field(
        None, description="A raw text file of the domain (relative to the project file) for perplexity.",
    )
    quality_tolerance: Annotated[float, Field(ge=0, le=1)] = Field(
        0.02, description="Quality within this much of the best counts as equal; the cheapest such candidate is chosen.",
    )


class ProjectConfig(Strict):
    """A Tuneloom project: where outputs go and the tasks to tune."""

    project: str = Field(description="Project name, shown in reports.")
    workspace: str = Field("workspace", description="Output folder, relative to the project file.")
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig()
    serve: ServeConfig = ServeConfig()
    scout: ScoutConfig = ScoutConfig()
    tasks: list[TaskConfig] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique; repeated: {dupes}")
        return tasks

    @model_validator(mode="after")
    def _scout_tasks(self) -> ProjectConfig:
        unknown = sorted(set(self.scout.tasks) - set(self.task_names()))
        if unknown:
            raise ValueError(f"scout.tasks: no task named {unknown}; tasks: {self.task_names()}")
        return self

    def task(self, name: str | None) -> TaskConfig:
        if name is None:
            if len(self.tasks) == 1:
                return self.tasks[0]
            raise ProjectFileError(f"this project has several tasks; choose one with --task: {self.task_names()}")
        for t in self.tasks:
            if t.name == name:
                return t
        hint = _did_you_mean(name, self.task_names())
        raise ProjectFileError(f"no task named '{name}'{hint}; tasks: {self.task_names()}")

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


class Project(BaseModel):
    """A loaded project file: the validated config plus where it lives."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: ProjectConfig
    path: Path

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def workspace(self) -> Path:
        return (self.root / self.config.workspace).resolve()

    def source_path(self, source: SourceConfig) -> Path:
        return (self.root / source.path).resolve()


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _allowed_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names allowed at `path` (the parent of an unknown key)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        current = _first_model(ann)
        if current is None:
            return []
    return list(current.model_fields)


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _yaml_line(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `path` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]  # a key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str, node: yaml.Node | None) -> str:
    lines = [f"{source} is not a valid Tuneloom project file:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line = _yaml_line(node, loc)
        where = f"{_format_loc(loc)}" + (f" (line {line})" if line else "")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(ProjectConfig, loc[:-1])
            hint = _did_you_mean(str(loc[-1]), allowed)
            msg = f"unknown key{hint}; allowed keys here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if "input" in e and not isinstance(e["input"], (dict, list)):
                msg = f"{e['input']!r}: {msg}"
        lines.append(f"  - {where}: {msg}")
    lines.append("Fix the fields above; `tuneloom config schema` prints every allowed key.")
    return "\n".join(lines)


def parse_project(text: str, source: str = "<project file>") -> ProjectConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProjectFileError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProjectFileError(f"{source} must be a YAML mapping with keys 'project', 'workspace' and 'tasks'")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ProjectFileError(format_validation_error(err, source, node)) from None


def load_project(path: str | Path = "tuneloom.yaml", overrides: list[str] | None = None) -> Project:
    """Read and validate a project file; `overrides` are `key.path=value` strings (see `apply_overrides`)."""
    p = Path(path)
    if p.is_dir():
        p = p / "tuneloom.yaml"
    if not p.is_file():
        raise ProjectFileError(
            f"project file not found: {p}. Create one with `tuneloom init` or pass --config PATH."
        )
    config = parse_project(p.read_text(encoding="utf-8"), str(p))
    if overrides:
        config = apply_overrides(config, overrides)
    return Project(config=config, path=p.resolve())


def apply_overrides(config: ProjectConfig, overrides: list[str]) -> ProjectConfig:
    """Apply `train.lr=1e-4` style overrides to every task, or `TASK:train.lr=1e-4` to one task."""
    data = config.model_dump(mode="json")
    for item in overrides:
        if "=" not in item:
            raise ProjectFileError(f"override '{item}' must look like key.path=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        task_name, _, dotted = key.rpartition(":")
        value = yaml.safe_load(raw)
        targets = [t for t in data["tasks"] if not task_name or t["name"] == task_name]
        if not targets:
            raise ProjectFileError(f"override '{item}': no task named '{task_name}'")
        for task in targets:
            node = task
            parts = dotted.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ProjectFileError(f"override '{item}': '{part}' is not a section of a task")
                node = node[part]
            node[parts[-1]] = value
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as err:
        raise ProjectFileError(format_validation_error(err, "--set overrides", None)) from None


def project_schema() -> dict[str, Any]:
    return ProjectConfig.model_json_schema()
