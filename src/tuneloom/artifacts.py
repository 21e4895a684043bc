"""Typed files between stages: what each one holds, and its one reader and one atomic writer.

    data prepare  -> datasets/<task>/<version>/manifest.json   DatasetManifest
                     datasets/<task>/<version>/rejects.jsonl    RejectedRow per line
    train         -> runs/<run>/config.yaml                     RunSnapshot
                     runs/<run>/status.json                     RunStatus
                     runs/<run>/summary.json                    TrainingSummary
    evaluate      -> runs/<run>/eval.json                       EvalResult
    gate          -> runs/<run>/gate.json                       GateRecord
    scout         -> scout/<time>/scout.json                    ScoutResult
    index         -> knowledge/<name>/index.json                IndexState
    feedback      -> datasets/<task>/feedback-<version>/feedback.json  FeedbackRecord
    export        -> exports/<label>/export.json                ExportManifest
    train         -> runs/<run>/metrics.jsonl                   (rows: step, loss, eval_loss, ...)
    console jobs  -> console/jobs/<id>/job.json                 JobRecord

Every file carries `schema_version`. A file without it comes from the release before typed
artifacts and is read as version 1; a newer version, a corrupt file or a missing field raises
`ArtifactError` naming the file and what to do. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneloom.atomic import write_json_atomic, write_text_atomic
from tuneloom.errors import TuneloomError

SCHEMA_VERSION = 1


class ArtifactError(TuneloomError):
    """A workspace file that is missing, corrupt or from an incompatible Tuneloom version."""


class Artifact(BaseModel):
    """Base of every stage file: unknown keys are kept (a newer minor release may add some)."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION


# ---------------------------------------------------------------------------------------------
# data preparation


class SourceAccount(BaseModel):
    """One source's rows: read = kept + sum(rejected) + duplicates (exact and near)."""

    path: str
    sha256: str
    files: dict[str, str] = Field(default_factory=dict, description="File inside the source -> sha256.")
    read: int
    kept: int
    rejected: dict[str, int]
    duplicates: int
    near_duplicates: int = 0
    redacted: dict[str, int] = Field(default_factory=dict)
    encoding: str | None = Field(
        None, description="Encoding(s) the source's text files were read with (None: no text files, e.g. Parquet)."
    )


class PreparedDataset(BaseModel):
    """What `prepare_dataset` returns; also the `result` part of a dataset manifest."""

    task: str
    version: str
    path: str
    reused: bool
    counts: dict[str, int]
    labels: list[str] | None
    sources: list[SourceAccount]
    redacted: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class ManifestResult(PreparedDataset):
    reused: bool = False


class KnowledgeSplit(BaseModel):
    """Retrieval at data-prep time over one split: how many rows have a grounding passage, and where it went."""

    rows: int
    grounded: int = Field(description="Rows with a chunk that contains enough of the answer (rag.min_support).")
    hit: int = Field(description="Grounded rows whose grounding chunk is among the question's top k.")
    grounding_in_prompt: int = Field(description="Rows whose recorded prompt passages include the grounding chunk.")


class KnowledgeAccount(BaseModel):
    """The knowledge base a dataset version's rows retrieved from, and the passages recorded per split."""

    knowledge: str
    version: str = Field(description="The knowledge base's content version when the passages were retrieved.")
    rag: dict[str, Any] = Field(description="The task's `rag` settings.")
    splits: dict[str, KnowledgeSplit]


class DatasetManifest(Artifact):
    """`datasets/<task>/<version>/manifest.json`: the accounting and settings of one dataset version."""

    result: ManifestResult
    task_type: str
    data_config: dict[str, Any] = Field(default_factory=dict)
    model: str = Field("", description="The model whose tokenizer measured the token statistics.")
    label_counts: dict[str, dict[str, int]] | None = None
    tokens: dict[str, Any] | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    prep_version: int | None = None
    knowledge: KnowledgeAccount | None = None  # tasks that name a knowledge base: the passages recorded
    project_file: str = Field("", description="The project file that prepared it (tasks reading a knowledge base open it).")

    @property
    def labels(self) -> list[str]:
        return list(self.result.labels or [])


class RejectedRow(BaseModel):
    """One line of `rejects.jsonl`: where the row came from and why it was left out (plus reason-specific keys)."""

    model_config = ConfigDict(extra="allow")

    location: str
    reason: str


# ---------------------------------------------------------------------------------------------
# training


class DatasetRef(BaseModel):
    path: str
    version: str


class RunSnapshot(Artifact):
    """`runs/<run>/config.yaml`: the task's settings and inputs as the run started with them."""

    project: str
    project_file: str
    task: dict[str, Any] = Field(description="The task's section of the project file, defaults filled in.")
    dataset: DatasetRef
    base_model_path: str
    precision: str
    versions: dict[str, str] = Field(default_factory=dict)
    init_from: str | None = Field(
        None, description="Weights training started from (an earlier version's model/), if not the base's."
    )
    baseline: str | None = Field(
        None, description="The cheap baseline this run's model is (made by `tuneloom eval ship-baseline`), if any."
    )

    def task_config(self) -> Any:
        """The task as a validated `TaskConfig`."""
        from tuneloom.config import TaskConfig

        return TaskConfig.model_validate(self.task)

    @property
    def task_type(self) -> str:
        return str(self.task["type"])


class EmbedderCard(Artifact):
    """`runs/<run>/model/tuneloom_embedder.json`: what a tuned embedder was trained from and on."""

    knowledge_base: str
    base_embedder: str = Field(description="The model the embedder was tuned from (catalog name, folder or hub id).")
    index_embedder: str = Field("", description="The embedder the knowledge base's index was built with, at training time.")
    content_version: str = Field("", description="The knowledge base's content version at training time.")
    chunks: int = Field(ge=0, description="Chunks in the knowledge base (the hard-negative pool).")
    pairs: dict[str, int] = Field(description="Training pairs by origin: qa (linked answers), passage, pseudo.")
    unlinked: int = Field(0, ge=0, description="Question/answer rows no chunk grounded well enough (left out).")
    unlinked_ids: list[str] = Field(default_factory=list, description="Ids of the first 50 unlinked rows.")
    hard_negatives: int = 0
    matryoshka_dims: list[int] | None = None


class RunStatus(Artifact):
    """`runs/<run>/status.json`: running, completed, failed or interrupted."""

    state: str
    updated: str | None = None
    pid: int | None = None
    error: str | None = None
    resumed_from: str | None = None


class RecipeChoice(BaseModel):
    """`train.recipe: auto`: the recipe kept and each candidate's validation accuracy (None: not tried)."""

    chosen: str
    metric: str = "validation_accuracy"
    scores: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    reason: str = ""


class TrainResult(BaseModel):
    task: str
    run_dir: str
    model_dir: str
    dataset: str
    method: str
    precision: str
    steps: int
    epochs: float
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    tokens: int
    tokens_per_s: float
    trainable_parameters: int
    total_parameters: int
    truncated_examples: int
    processes: int = 1  # data-parallel processes (accelerate launch)
    global_batch_size: int = 0  # examples per optimizer step: batch_size x grad_accum x processes
    process_ids: list[int] = []  # the pid of every process that trained, rank 0 first
    attention: str | None = None  # the decoder's attention implementation (see train.attention)
    best_checkpoint: str | None = None
    resumed_from: str | None = None
    recipes: RecipeChoice | None = None  # classification with train.recipe: auto


class EvalSummary(BaseModel):
    split: str
    test_dataset: str
    n_examples: int
    sampled: bool
    comparison: dict[str, dict[str, float]]


class TrainingSummary(Artifact):
    """`runs/<run>/summary.json`: written last by training (its presence marks a finished run)."""

    train: TrainResult
    eval: EvalSummary | None = None


# ---------------------------------------------------------------------------------------------
# evaluation and gate


class Delta(BaseModel):
    """One metric's change from one side to another, with its paired-bootstrap 95% interval."""

    delta: float
    low: float
    high: float


class RetrievalExample(BaseModel):
    """One test question answered by every side, with the passages the retrieval sides saw."""

    id: str
    question: str
    reference: str
    slice: str | None = None
    answers: dict[str, str] = Field(description="Side -> answer.")
    token_f1: dict[str, float] = Field(description="Side -> token F1 of its answer.")
    sources: list[dict[str, Any]] = Field(description="Numbered passages: n, chunk_id, doc_id, section, score.")
    grounding: str | None = Field(None, description="The chunk that grounds the reference answer, when one does.")
    hit: bool = False


class RetrievalComparison(BaseModel):
    """Tasks with a knowledge base: each model with and without retrieved passages on the same test questions.

    Sides: base, base+retrieval, tuned, tuned+retrieval (and production, production+retrieval).
    """

    knowledge: str
    top_k: int
    n_examples: int
    n_grounded: int = Field(description="Test questions whose reference answer a chunk of the knowledge base grounds.")
    hit_rate: float | None = Field(description="Share of grounded questions whose grounding chunk was retrieved (top k).")
    sides: dict[str, dict[str, float]] = Field(description="Side -> metric -> value (groundedness included).")
    deltas: dict[str, dict[str, Delta]] = Field(description="'A vs B' -> metric -> A minus B with its interval.")
    slices: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="Slice -> side -> metric, for tasks with a slice column."
    )
    examples: list[RetrievalExample] = Field(default_factory=list)


class EvalResult(Artifact):
    """`runs/<run>/eval.json`: base, tuned and (when given) production scored on the same test examples.

    `base`, `tuned` and `production` map metric -> value; `comparison` holds each shown metric's
    values, delta and 95% interval; `examples` one record per test example (task-specific keys).
    """

    task: str = ""
    task_type: str = ""
    run: str = ""
    split: str = "test"
    test_dataset: str = ""
    n_examples: int = 0
    sampled: bool = False
    seconds: float = 0.0
    base: dict[str, Any]
    tuned: dict[str, Any]
    production: dict[str, Any] | None = None
    production_version: str | None = None
    metrics_shown: list[str] = Field(default_factory=list)
    comparison: dict[str, dict[str, float]] = Field(default_factory=dict)
    comparison_production: dict[str, dict[str, float]] | None = None
    intervals: dict[str, list[float]] = Field(default_factory=dict)
    examples: list[dict[str, Any]] = Field(default_factory=list)
    improved: list[dict[str, Any]] = Field(default_factory=list)
    worsened: list[dict[str, Any]] = Field(default_factory=list)
    slices: dict[str, dict[str, Any]] = Field(default_factory=dict)
    judge: dict[str, Any] | None = None
    labels: list[str] | None = None  # classification, ner: the label set scored
    intervals_production: dict[str, list[float]] | None = None
    forgetting: dict[str, Any] | None = None  # chat: base and tuned on the general-ability set
    base_method: str | None = None  # how the base was scored when it cannot answer as is (zero-shot...)
    example_metric: str | None = None  # what `score_base` / `score_tuned` of each example mean
    search_corpus: dict[str, Any] | None = None  # embedding: knowledge base, chunks, linked and unlinked test questions
    # cheap baselines on the same test rows: name -> {method, metrics, intervals (tuned minus it), seconds}
    # or name -> {skipped: reason}; None when eval.baselines is off
    baselines: dict[str, dict[str, Any]] | None = None
    shipped_baseline: str | None = None  # the baseline the evaluated model is (gate.beat_baselines compares the others)
    retrieval: RetrievalComparison | None = None  # tasks with a knowledge base: with and without retrieval

    def side(self, name: str) -> dict[str, Any]:
        """Metrics of `base`, `tuned` or `production` (empty when that side was not scored)."""
        return dict(getattr(self, name) or {})


class RuleResult(BaseModel):
    rule: str
    value: float
    limit: float
    passed: bool
    detail: str


class GateResult(BaseModel):
    passed: bool
    reference: str  # "production" or "base" (+retrieval for tasks with a knowledge base): what drops are measured against
    rules: list[RuleResult]


class GateRecord(Artifact, GateResult):
    """`runs/<run>/gate.json`: the gate's verdict, which rules it used and when."""

    rules_from: str = "project"
    checked: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))


# ---------------------------------------------------------------------------------------------
# knowledge bases


class SkippedDocument(BaseModel):
    """A document left out of a knowledge base, and why (empty, too large, no text layer, duplicate...)."""

    doc_id: str
    reason: str


class IndexStats(BaseModel):
    """What a knowledge base holds, and what the last build or update did."""

    knowledge_base: str
    documents: int = 0
    chunks: int = 0
    tokens: int = 0
    added: int = Field(0, description="Documents embedded for the first time by the last build or update.")
    changed: int = Field(0, description="Documents embedded again because their content changed.")
    removed: int = Field(0, description="Documents deleted from the index because they left the sources.")
    unchanged: int = 0
    embedded_chunks: int = 0
    skipped: list[SkippedDocument] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    content_version: str = ""

    @property
    def chunks_per_s(self) -> float:
        return self.embedded_chunks / self.seconds if self.seconds else 0.0


class IndexedDocument(BaseModel):
    doc_hash: str
    chunks: int
    tokens: int


class IndexState(Artifact):
    """`knowledge/<name>/index.json`: the settings an index was built with, its documents, and unfinished work.

    `pending` lists documents whose chunks were being rewritten; a build or update interrupted there
    re-embeds them on the next run (it resumes), so the index is never left half-written for long.
    """

    settings_hash: str
    embedder: str
    embedder_hash: str
    pending: list[str] = Field(default_factory=list)
    documents: dict[str, IndexedDocument] = Field(default_factory=dict)
    stats: IndexStats
    updated: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))


# feedback


class FeedbackRecord(Artifact):
    """`datasets/<task>/feedback-<version>/feedback.json`: which feedback a contribution holds and what the guards kept out.

    The folder is a dataset version (manifest.json, train.jsonl, test.jsonl = the held-out feedback);
    this file adds the feedback ids behind its rows and each row's lineage.
    """

    task: str
    version: str
    format: str
    feedback_ids: list[int] = Field(description="Feedback behind train.jsonl.")
    held_out_ids: list[int] = Field(description="Feedback behind test.jsonl (evaluation only, never trained on).")
    excluded: dict[str, list[int]] = Field(default_factory=dict, description="duplicate / leaked / invalid -> feedback ids.")
    lineage: list[dict[str, Any]] = Field(default_factory=list, description="Per row: feedback, completion, version, sources.")
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))


# ---------------------------------------------------------------------------------------------
# console jobs

JOB_STATES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")


class JobRecord(Artifact):
    """`console/jobs/<id>/job.json`: one command the web console runs in a subprocess (log beside it)."""

    id: str
    kind: str  # prepare | train | eval | run | resume | ...
    argv: list[str] = Field(description="The `tuneloom` command line, without the executable.")
    task: str | None = None
    run: str | None = None  # the run an eval or resume job works on
    state: str = "queued"
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    finished: str | None = None
    runner_pid: int | None = None  # the process that waits for the command and records its end
    pid: int | None = None  # the command's process (runs it writes carry this pid in status.json)
    returncode: int | None = None
    user: str | None = None  # the API key id that launched it


# ---------------------------------------------------------------------------------------------
# files: one reader and one writer each

T = TypeVar("T", bound=BaseModel)

RECREATE = {
    "manifest.json": "run `tuneloom data prepare` again to re-create the dataset version",
    "config.yaml": "the run cannot be used; train it again with `tuneloom train`",
    "status.json": "delete it to mark the run interrupted, or train again",
    "summary.json": "the run did not finish cleanly; resume it with `tuneloom train --resume RUN` or train again",
    "eval.json": "run `tuneloom eval RUN` again",
    "tuneloom_embedder.json": "the embedder cannot be traced to its knowledge base; train it again with `tuneloom train`",
    "gate.json": "run `tuneloom gate RUN` again",
    "scout.json": "run `tuneloom scout` again",
    "index.json": "run `tuneloom index build` again",
    "feedback.json": "delete the feedback-<version> folder; the next `contribution` (or `tuneloom iterate`) writes it again",
    "export.json": "run `tuneloom export` again",
    "job.json": "delete the job's folder under console/jobs and launch it again",
}


# ---------------------------------------------------------------------------------------------
# export


class ExportedFile(BaseModel):
    """One file an export wrote, with its hash."""

    path: str = Field(description="File name inside the export folder, or an absolute path for a shared base.")
    role: str = Field(description="model (merged or base GGUF), adapter (LoRA GGUF) or modelfile (Ollama).")
    sha256: str
    bytes: int


class ExportManifest(Artifact):
    """`exports/<label>/export.json`: what `tuneloom export` wrote, from which model, and why it merged."""

    source: str = Field(description="The run folder or registry reference exported.")
    registry_name: str | None = None
    registry_version: int | None = None
    format: str = Field(description="gguf or ollama.")
    quant: str
    mode: str = Field(description="merged (one GGUF) or adapter (base GGUF + LoRA GGUF).")
    merge_reasons: list[str] = Field(default_factory=list, description="Why an adapter export was merged instead.")
    stop_tokens: list[str] = Field(default_factory=list)
    files: list[ExportedFile]
    created: str


def _load(path: Path, model: type[T]) -> T:
    what = RECREATE.get(path.name, "re-create it with the command that wrote it")
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: {what}")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{path} is corrupt ({type(exc).__name__}: {exc}): {what}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} is corrupt (not a mapping): {what}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {version!r}, newer than this Tuneloom reads ({SCHEMA_VERSION}): "
            f"upgrade Tuneloom, or {what}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ArtifactError(f"{path} is not a valid {model.__name__} ({field}: {first['msg']}): {what}") from None


def _dump(artifact: BaseModel) -> dict[str, Any]:
    return artifact.model_dump(mode="json")


def manifest_path(dataset_dir: str | Path) -> Path:
    return Path(dataset_dir) / "manifest.json"


def read_manifest(dataset_dir: str | Path) -> DatasetManifest:
    return _load(manifest_path(dataset_dir), DatasetManifest)


def write_manifest(dataset_dir: str | Path, manifest: DatasetManifest) -> None:
    write_json_atomic(manifest_path(dataset_dir), _dump(manifest))


def read_rejects(dataset_dir: str | Path) -> list[RejectedRow]:
    """`rejects.jsonl` of a dataset version (empty when every row was kept)."""
    path = Path(dataset_dir) / "rejects.jsonl"
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(RejectedRow.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            raise ArtifactError(f"{path}:{n} is not a rejected row ({type(exc).__name__}): {RECREATE['manifest.json']}") from None
    return rows


def read_snapshot(run_dir: str | Path) -> RunSnapshot:
    return _load(Path(run_dir) / "config.yaml", RunSnapshot)


def write_snapshot(run_dir: str | Path, snapshot: RunSnapshot) -> None:
    text = yaml.safe_dump(_dump(snapshot), sort_keys=False, allow_unicode=True)
    write_text_atomic(Path(run_dir) / "config.yaml", text)


EMBEDDER_CARD = "tuneloom_embedder.json"


def read_embedder_card(model_dir: str | Path) -> EmbedderCard:
    return _load(Path(model_dir) / EMBEDDER_CARD, EmbedderCard)


def write_embedder_card(model_dir: str | Path, card: EmbedderCard) -> None:
    write_json_atomic(Path(model_dir) / EMBEDDER_CARD, _dump(card))


def read_status(run_dir: str | Path) -> RunStatus:
    return _load(Path(run_dir) / "status.json", RunStatus)


def write_status(run_dir: str | Path, state: str, **extra: Any) -> None:
    status = RunStatus(state=state, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    write_json_atomic(Path(run_dir) / "status.json", status.model_dump(mode="json", exclude_none=True))


def read_summary(run_dir: str | Path) -> TrainingSummary:
    return _load(Path(run_dir) / "summary.json", TrainingSummary)


def write_summary(run_dir: str | Path, summary: TrainingSummary) -> None:
    data = summary.model_dump(mode="json", exclude={"eval"} if summary.eval is None else None)
    write_json_atomic(Path(run_dir) / "summary.json", data)  # no `eval` key until the run is evaluated


def read_eval(run_dir: str | Path) -> EvalResult:
    return _load(Path(run_dir) / "eval.json", EvalResult)


def read_feedback_eval(run_dir: str | Path) -> EvalResult:
    """`runs/<run>/feedback_eval.json`: the run scored on held-out feedback rows (`tuneloom iterate`)."""
    return _load(Path(run_dir) / "feedback_eval.json", EvalResult)


def write_feedback_eval(run_dir: str | Path, result: EvalResult) -> None:
    write_json_atomic(Path(run_dir) / "feedback_eval.json", _dump(result))


def write_eval(run_dir: str | Path, result: EvalResult) -> None:
    write_json_atomic(Path(run_dir) / "eval.json", _dump(result))


def read_gate(run_dir: str | Path) -> GateRecord:
    return _load(Path(run_dir) / "gate.json", GateRecord)


def write_gate(run_dir: str | Path, record: GateRecord) -> None:
    write_json_atomic(Path(run_dir) / "gate.json", _dump(record))


def read_export(export_dir: str | Path) -> ExportManifest:
    return _load(Path(export_dir) / "export.json", ExportManifest)


def write_export(export_dir: str | Path, manifest: ExportManifest) -> None:
    write_json_atomic(Path(export_dir) / "export.json", _dump(manifest))


def read_scout(path: str | Path) -> Any:
    """A scout.json (the folder or the file)."""
    from tuneloom.scout import ScoutResult

    p = Path(path)
    return _load(p / "scout.json" if p.is_dir() else p, ScoutResult)


def write_scout(out_dir: str | Path, result: BaseModel) -> Path:
    path = Path(out_dir) / "scout.json"
    write_json_atomic(path, _dump(result))
    return path


def index_state_path(kb_dir: str | Path) -> Path:
    return Path(kb_dir) / "index.json"


def read_index_state(kb_dir: str | Path) -> IndexState:
    return _load(index_state_path(kb_dir), IndexState)


def write_index_state(kb_dir: str | Path, state: IndexState) -> None:
    write_json_atomic(index_state_path(kb_dir), _dump(state))


def read_feedback_record(folder: str | Path) -> FeedbackRecord:
    return _load(Path(folder) / "feedback.json", FeedbackRecord)


def write_feedback_record(folder: str | Path, record: FeedbackRecord) -> None:
    write_json_atomic(Path(folder) / "feedback.json", _dump(record))


# ---------------------------------------------------------------------------------------------
# the feedback loop (`tuneloom iterate`)

IterateStage = Literal["dataset", "trained", "evaluated", "gated", "registered", "marked", "done"]
IterateOutcomeKind = Literal["promoted", "canary", "gate_failed", "dry_run", "nothing_new"]


class IterateState(Artifact):
    """`iterate/<task>/state.json`: how far the current turn got; a rerun after a crash resumes from it."""

    task: str
    started: str  # ISO time, UTC
    stage: IterateStage
    dry_run: bool = False
    parent_dataset: str = Field(description="The task's own prepared dataset version the new one extends.")
    dataset: str = Field(description="The new dataset version's folder (task data + feedback rows).")
    holdout: str | None = Field(None, description="Folder of the held-out feedback rows (test split), if any.")
    contribution: str = Field(description="The feedback contribution's version.")
    feedback_ids: list[int] = Field(description="Feedback trained on.")
    held_out_ids: list[int] = Field(default_factory=list, description="Feedback held out for evaluation.")
    production_before: int | None = None
    run_dir: str | None = None
    version: int | None = None
    gate_passed: bool | None = None


class MetricChange(BaseModel):
    """One metric of the new version against production (or base) on one test set."""

    metric: str
    reference: str  # production | base
    before: float
    after: float


class IterateSummary(Artifact):
    """`iterate/<task>/<time>/summary.json`: what one turn of the loop changed, and why."""

    task: str
    outcome: IterateOutcomeKind
    exit_code: int
    reason: str
    new_rows: int
    min_new_rows: int
    parent_dataset: str | None = None
    dataset: str | None = None
    feedback_ids: list[int] = Field(default_factory=list)
    held_out_ids: list[int] = Field(default_factory=list)
    training_rows: dict[str, int] = Field(default_factory=dict, description="task, feedback (after weighting), total.")
    start_from: str | None = None
    run_dir: str | None = None
    version: int | None = None
    production_before: int | None = None
    production_after: int | None = None
    golden: list[MetricChange] = Field(default_factory=list)
    feedback_slice: list[MetricChange] = Field(default_factory=list)
    gate_failures: list[str] = Field(default_factory=list)
    resumed: bool = False


def iterate_dir(workspace: str | Path, task: str) -> Path:
    return Path(workspace) / "iterate" / task


def read_iterate_state(workspace: str | Path, task: str) -> IterateState | None:
    """The unfinished turn of `task`, or None."""
    path = iterate_dir(workspace, task) / "state.json"
    return _load(path, IterateState) if path.is_file() else None


def write_iterate_state(workspace: str | Path, state: IterateState) -> None:
    write_json_atomic(iterate_dir(workspace, state.task) / "state.json", _dump(state))


def read_iterate_summary(path: str | Path) -> IterateSummary:
    return _load(Path(path), IterateSummary)


def write_iterate_summary(workspace: str | Path, summary: IterateSummary, stamp: str) -> Path:
    path = iterate_dir(workspace, summary.task) / stamp / "summary.json"
    write_json_atomic(path, _dump(summary))
    return path


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """`runs/<run>/metrics.jsonl`: one row per logging step (empty before the first); a torn last line
    (the run is writing it now) is left out, any other bad line raises `ArtifactError`."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise ArtifactError(f"{path}:{n} is not JSON: the run's metrics are corrupt; train it again") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def job_path(job_dir: str | Path) -> Path:
    return Path(job_dir) / "job.json"


def read_job(job_dir: str | Path) -> JobRecord:
    return _load(job_path(job_dir), JobRecord)


def write_job(job_dir: str | Path, job: JobRecord) -> None:
    write_json_atomic(job_path(job_dir), _dump(job))


def artifact_models() -> dict[str, type[BaseModel]]:
    """File name -> model, for `tuneloom schema artifacts` and the docs."""
    from tuneloom.scout import ScoutResult

    return {
        "datasets/<task>/<version>/manifest.json": DatasetManifest,
        "runs/<run>/config.yaml": RunSnapshot,
        "runs/<run>/status.json": RunStatus,
        "runs/<run>/summary.json": TrainingSummary,
        "runs/<run>/eval.json": EvalResult,
        "runs/<run>/gate.json": GateRecord,
        "runs/<run>/feedback_eval.json": EvalResult,
        "runs/<run>/model/tuneloom_embedder.json": EmbedderCard,
        "scout/<time>/scout.json": ScoutResult,
        "knowledge/<name>/index.json": IndexState,
        "datasets/<task>/feedback-<version>/feedback.json": FeedbackRecord,
        "iterate/<task>/state.json": IterateState,
        "iterate/<task>/<time>/summary.json": IterateSummary,
        "exports/<label>/export.json": ExportManifest,
        "console/jobs/<id>/job.json": JobRecord,
    }


def artifact_schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in artifact_models().items()}
