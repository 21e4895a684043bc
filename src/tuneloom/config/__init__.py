"""The project file (`tuneloom.yaml`): pydantic models, loading, and readable errors.

One source of truth for the CLI and the Python API. Every model forbids unknown keys; a
wrong file raises `ProjectFileError`, whose message names the field path, the YAML line,
the bad value and what is allowed. One module per section (data, train, evaluation, serve,
scout, tracking), the task and project that hold them, and the loading, overrides and error
messages; every name is importable from `tuneloom.config`.
"""

from __future__ import annotations

from tuneloom.config.base import Strict
from tuneloom.config.data import (
    BoilerplateRule,
    CleanConfig,
    ColumnsConfig,
    DataConfig,
    DedupConfig,
    PiiType,
    RedactConfig,
    SourceConfig,
    SourceFormat,
    SplitConfig,
    TaskSourceConfig,
)
from tuneloom.config.embedding import EmbeddingConfig
from tuneloom.config.evaluation import DEFAULT_RUBRIC, EvalConfig, GateConfig, JudgeConfig
from tuneloom.config.feedback import AutoAcceptRule, FeedbackConfig
from tuneloom.config.knowledge import (
    AccessConfig,
    ChunkingConfig,
    EmbedderConfig,
    KnowledgeConfig,
    RetrievalConfig,
    StoreConfig,
)
from tuneloom.config.loading import load_project, parse_project
from tuneloom.config.loop import CanaryConfig, IterateConfig
from tuneloom.config.messages import did_you_mean, format_validation_error
from tuneloom.config.overrides import apply_overrides
from tuneloom.config.project import Project, ProjectConfig, project_schema
from tuneloom.config.rag import RagConfig
from tuneloom.config.scout import ScoutCandidate, ScoutConfig, ScoutConstraints, ScoutPrecision
from tuneloom.config.serve import ServeConfig, ServedModelConfig, ServeLimitsConfig
from tuneloom.config.task import (
    BUILTIN_TASK_TYPES,
    TASK_RULES,
    TaskConfig,
    check_catalog_model,
    check_search_space,
    check_validation_split,
)
from tuneloom.config.tracking import RegistryConfig, TrackingConfig
from tuneloom.config.train import (
    SEARCH_PARAMS,
    Choices,
    FloatRange,
    IntRange,
    MethodConfig,
    SearchConfig,
    TrainConfig,
)
from tuneloom.errors import ProjectFileError
from tuneloom.tasks.base import LOWER_IS_BETTER  # re-exported for callers written before tuneloom.tasks

__all__ = [
    "AutoAcceptRule",
    "FeedbackConfig",
    "BUILTIN_TASK_TYPES",
    "DEFAULT_RUBRIC",
    "LOWER_IS_BETTER",
    "SEARCH_PARAMS",
    "TASK_RULES",
    "AccessConfig",
    "BoilerplateRule",
    "ChunkingConfig",
    "CanaryConfig",
    "Choices",
    "CleanConfig",
    "ColumnsConfig",
    "DataConfig",
    "DedupConfig",
    "EmbedderConfig",
    "EmbeddingConfig",
    "EvalConfig",
    "FloatRange",
    "GateConfig",
    "IterateConfig",
    "IntRange",
    "JudgeConfig",
    "KnowledgeConfig",
    "MethodConfig",
    "PiiType",
    "Project",
    "ProjectConfig",
    "ProjectFileError",
    "RagConfig",
    "RedactConfig",
    "RegistryConfig",
    "RetrievalConfig",
    "ScoutCandidate",
    "ScoutConfig",
    "ScoutConstraints",
    "ScoutPrecision",
    "SearchConfig",
    "ServeConfig",
    "ServeLimitsConfig",
    "ServedModelConfig",
    "SourceConfig",
    "SourceFormat",
    "SplitConfig",
    "StoreConfig",
    "Strict",
    "TaskConfig",
    "TaskSourceConfig",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "check_catalog_model",
    "check_search_space",
    "check_validation_split",
    "did_you_mean",
    "format_validation_error",
    "load_project",
    "parse_project",
    "project_schema",
]
