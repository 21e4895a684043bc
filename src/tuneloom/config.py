"""The project file (`tuneloom.yaml`): pydantic models, loading, and readable errors.

One source of truth for the CLI and the Python API. Every model forbids unknown keys; a
wrong file raises `ProjectFileError`, whose message names the field path, the YAML line,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneloom.catalog.entries import CATALOG
from tuneloom.errors import ProjectFileError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


TaskType = Literal["chat_sft", "classification"]


class SourceConfig(Strict):
    """One input file (CSV, TSV, JSON, JSONL or Parquet), relative to the project file."""

    path: str
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "parquet"] = "auto"


class ColumnsConfig(Strict):
    """Which source columns play which role."""

    prompt: str | None = None
    response: str | None = None
    text: str | list[str] | None = Field(
        None, description="Input text; a list of columns is joined with blank lines (e.g. subject and body)."
    )
    label: str | None = None
    slice: str | None = Field(None, description="Optional column to report results by (e.g. topic, product).")

    def required(self) -> list[str]:
        cols: list[str] = []
        for value in (self.prompt, self.response, self.label, self.slice):
            if value:
                cols.append(value)
        if isinstance(self.text, str):
            cols.append(self.text)
        elif self.text:
            cols.extend(self.text)
        return cols


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


class DataConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    columns: ColumnsConfig
    system_prompt: str | None = Field(None, description="Chat tasks: system message put before every example.")
    min_chars: Annotated[int, Field(ge=0)] = 1
    max_chars: Annotated[int, Field(gt=0)] = 20_000
    split: SplitConfig = SplitConfig()


class MethodConfig(Strict):
    kind: Literal["full", "lora", "qlora"] = "lora"
    r: Annotated[int, Field(gt=0, le=1024)] = 16
    alpha: Annotated[float, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: str | list[str] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )


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
    eval_every: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Validation loss every N optimizer steps (default: about 6 times per run)."
    )
    seed: int = 42
    class_weights: Literal["balanced", "none"] = Field(
        "balanced", description="Classification: weight the loss by inverse class frequency (rare queues count)."
    )


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


TASK_METRICS: dict[str, tuple[str, ...]] = {
    "chat_sft": ("loss", "perplexity", "rouge_l", "token_f1", "exact_match"),
    "classification": ("accuracy", "macro_f1", "weighted_f1"),
}
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


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
    type: TaskType
    model: str = Field(description="Catalog name, local model folder, or Hugging Face hub id.")
    trust_remote_code: bool = False
    data: DataConfig
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    registry_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Registered model name for this task's versions (default: the task name).",
    )
    label_descriptions: dict[str, str] | None = Field(
        None, description="Classification: a short description per label, used for the zero-shot baseline."
    )

    @model_validator(mode="after")
    def _compatible(self) -> TaskConfig:
        cols = self.data.columns
        if self.type == "classification":
            if not cols.label:
                raise ValueError("classification needs data.columns.label (the column holding the class)")
            if not cols.text:
                raise ValueError("classification needs data.columns.text (the input text column or columns)")
        if self.type == "chat_sft" and not (cols.prompt and cols.response):
            raise ValueError("chat_sft needs data.columns.prompt and data.columns.response")
        entry = CATALOG.get(self.model)
        if entry is not None:
            if self.type not in entry.tasks:
                allowed = ", ".join(sorted(entry.tasks))
                raise ValueError(f"catalog model '{self.model}' cannot do {self.type}; it supports: {allowed}")
            if self.method.kind == "qlora" and not entry.quantizable:
                raise ValueError(
                    f"qlora needs a model whose linear layers bitsandbytes can quantize to 4 bits; "
                    f"'{self.model}' is not one: use method.kind 'lora' or 'full'"
                )
        if self.method.kind == "qlora" and self.type != "chat_sft":
            raise ValueError("qlora is supported for chat_sft tasks; use method.kind 'lora' for classification")
        gate_metrics = TASK_METRICS[self.type] + (("judge_score",) if self.type == "chat_sft" else ())
        for rule in ("min", "max_drop"):
            unknown = [m for m in getattr(self.gate, rule) if m not in gate_metrics]
            if unknown:
                raise ValueError(f"gate.{rule}: unknown metric(s) {unknown} for {self.type}; allowed: {list(gate_metrics)}")
        if self.gate.max_class_f1_drop is not None and self.type != "classification":
            raise ValueError("gate.max_class_f1_drop applies to classification tasks only")
        if self.gate.max_forgetting is not None and not (self.type == "chat_sft" and self.eval.forgetting_check):
            raise ValueError("gate.max_forgetting needs a chat_sft task with eval.forgetting_check: true")
        if self.eval.metrics:
            unknown = [m for m in self.eval.metrics if m not in TASK_METRICS[self.type]]
            if unknown:
                raise ValueError(
                    f"unknown metric(s) {unknown} for {self.type}; allowed: {list(TASK_METRICS[self.type])}"
                )
        return self


class RegistryConfig(Strict):
    """Where model versions are registered (MLflow model registry)."""

    uri: str | None = Field(
        None, description="MLflow tracking server URL; default: a SQLite registry file in the workspace (no network)."
    )


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
    limits: ServeLimitsConfig = ServeLimitsConfig()


class ProjectConfig(Strict):
    """A Tuneloom project: where outputs go and the tasks to tune."""

    project: str = Field(description="Project name, shown in reports.")
    workspace: str = Field("workspace", description="Output folder, relative to the project file.")
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    tasks: list[TaskConfig] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[TaskConfig]) -> list[TaskConfig]:
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique; repeated: {dupes}")
        return tasks

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
