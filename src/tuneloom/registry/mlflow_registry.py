"""An MLflow model registry for Tuneloom runs.

Local by default: tracking and registry URI `sqlite:///<workspace>/mlflow.db`, artifacts under
`<workspace>/mlruns`; nothing goes to the network. With `registry_uri` set to a tracking server
(`http(s)://...`) the server stores runs, versions and (proxied) artifacts; credentials come from
MLflow's own environment variables (`MLFLOW_TRACKING_TOKEN`, ...), never from Tuneloom files, and
the URI itself is never logged.

Each registered version carries lineage tags (base model, dataset version, run folder, task type,
gate result). The alias `production` marks the version in service; every change of it (promote,
forced promote, rollback) is appended to a history kept as registered-model tags
`tuneloom.history.NNNNNN`, one JSON entry each, so no single tag grows without bound.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar

import yaml
from pydantic import BaseModel

from tuneloom.errors import TuneloomError
from tuneloom.workspace import atomic_dir

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

PRODUCTION = "production"
EXPERIMENT_PREFIX = "tuneloom"
HISTORY_PREFIX = "tuneloom.history."
LINEAGE_TAGS = (
    "project", "task", "task_type", "method", "base_model", "base_model_path",
    "dataset_version", "dataset_path", "run_dir", "gate",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential", re.IGNORECASE)
_MAX_PARAM = 6000   # MLflow's limit on a param value
_MAX_TAG = 5000     # well under MLflow's limit on a model registry tag value
_MAX_REASON = 1000

F = TypeVar("F", bound=Callable[..., Any])


class RegistryError(TuneloomError):
    """A registry operation that cannot be done; the message says why and what to do."""


class ModelVersionInfo(BaseModel):
    """One registered version: where it came from and where it stands."""

    name: str
    version: int
    run_id: str | None
    source: str
    created: str  # ISO time, UTC
    aliases: list[str]
    gate: str | None  # passed | failed | None (no gate result)
    lineage: dict[str, str]
    tags: dict[str, str]

    @property
    def is_production(self) -> bool:
        return PRODUCTION in self.aliases


class ResolvedModel(ModelVersionInfo):
    """A version plus the local folder holding its model/ artifacts (treat it as read-only)."""

    path: Path


class HistoryEntry(BaseModel):
    """One change of the `production` alias."""

    seq: int
    time: str  # ISO time, UTC
    action: Literal["promote", "rollback"]
    from_version: int | None
    to_version: int
    forced: bool = False
    reason: str | None = None


# --------------------------------------------------------------------------------------------
# helpers


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _redact(uri: str) -> str:
    """A URI without user:password@ and query string, safe to print."""
    return re.sub(r"(?<=://)[^/@]*@", "", uri).split("?")[0]


def _redact_text(text: str) -> str:
    return re.sub(r"(?<=://)[^/@\s]*@", "", str(text))


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' and '-' (no ':', '@' or '/'), "
            "starting with a letter or digit"
        )
    return name


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _prepare_mlflow() -> None:
    """Call before the first `import mlflow`: no usage telemetry, no migration chatter."""
    # MLflow 3.2+ sends usage telemetry unless told not to; Tuneloom promises no network by default.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # With a server, MLflow prints run links (with any user:password in the URI) to stdout and shows
    # download bars; and it retries a dead server for about 4 minutes before failing.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    # MLflow resets the level of its "mlflow" logger on import, not of its children.
    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store"):
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _mlflow_errors(func: F) -> F:
    """Turn MLflow failures (server down, bad URI, ...) into a readable RegistryError."""

    @functools.wraps(func)
    def wrapper(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
        _prepare_mlflow()
        from mlflow.exceptions import MlflowException

        try:
            return func(self, *args, **kwargs)
        except MlflowException as exc:
            raise RegistryError(f"model registry {self.display_uri}: {_redact_text(exc.message)}") from None

    return wrapper  # type: ignore[return-value]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    else:
        out[prefix[:-1]] = data
    return out


def _params(snapshot: dict[str, Any]) -> dict[str, str]:
    """Run params: the task config (flattened), base model, method, dataset; nothing secret-looking."""
    task = snapshot.get("task") or {}
    raw = {f"task.{k}": v for k, v in _flatten(task).items()}
    raw.update({
        "base_model": task.get("model"),
        "base_model_path": snapshot.get("base_model_path"),
        "method": (task.get("method") or {}).get("kind"),
        "task_type": task.get("type"),
        "dataset_version": (snapshot.get("dataset") or {}).get("version"),
        "precision": snapshot.get("precision"),
    })
    raw.update({f"versions.{k}": v for k, v in (snapshot.get("versions") or {}).items()})
    params = {}
    for key, value in raw.items():
        if value is None or _SECRET_KEY.search(key):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        params[re.sub(r"[^\w./ -]", "_", key)[:250]] = text[:_MAX_PARAM]
    return params


def _metrics(eval_result: dict[str, Any]) -> dict[str, float]:
    """The tuned side's numeric scores (nested dicts such as per_class flattened; lists skipped)."""
    out = {}
    for key, value in _flatten(eval_result.get("tuned") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[re.sub(r"[^\w./ -]", "_", key)[:250]] = float(value)
    return out


def _lineage(snapshot: dict[str, Any], run_dir: Path, gate: dict[str, Any] | None) -> dict[str, str]:
    task = snapshot.get("task") or {}
    dataset = snapshot.get("dataset") or {}
    tags = {
        "project": snapshot.get("project"),
        "task": task.get("name"),
        "task_type": task.get("type"),
        "method": (task.get("method") or {}).get("kind"),
        "base_model": task.get("model"),
        "base_model_path": snapshot.get("base_model_path"),
        "dataset_version": dataset.get("version"),
        "dataset_path": dataset.get("path"),
        "run_dir": str(run_dir),
    }
    if gate is not None:
        tags["gate"] = "passed" if gate["passed"] else "failed"
        failed = [r.get("detail") or r.get("rule") for r in gate.get("rules", []) if not r.get("passed", True)]
        if failed:
            tags["gate_failures"] = "; ".join(str(f) for f in failed)
    return {k: str(v)[:_MAX_TAG] for k, v in tags.items() if v is not None}


def _read_gate(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "gate.json"
    if not path.is_file():
        return None
    try:
        gate = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not valid JSON ({exc}); re-run the gate") from None
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        raise RegistryError(f"{path} must be a JSON object with \"passed\": true or false; re-run the gate")
    return gate


def _is_local_uri(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def _local_path(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`name`, `name:version` (or `name:latest`), `name@alias` -> (name, version, alias)."""
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if not alias:
            raise RegistryError(f"'{ref}': give an alias after '@', e.g. {name}@{PRODUCTION}")
        return _check_name(name), None, alias
    if ":" in ref:
        name, _, version = ref.partition(":")
        if not (version.isdigit() or version == "latest"):
            raise RegistryError(f"'{ref}': the version after ':' must be a number or 'latest', e.g. {name}:1")
        return _check_name(name), version, None
    return _check_name(ref), None, PRODUCTION


# --------------------------------------------------------------------------------------------
# the registry


class ModelRegistry:
    """A connection to one registry: the workspace's SQLite file, or a tracking server."""

    def __init__(self, workspace: str | Path, registry_uri: str | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.uri = registry_uri or f"sqlite:///{self.workspace / 'mlflow.db'}"
        # A tracking server keeps (or proxies) the artifacts; a database URI keeps them in the workspace.
        remote = self.uri.startswith(("http://", "https://", "databricks"))
        self.artifact_root: Path | None = None if remote else self.workspace / "mlruns"
        self.display_uri = _redact(self.uri)
        self._client_obj: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client_obj is None:
            _prepare_mlflow()
            if self.uri.startswith("sqlite:"):
                self.workspace.mkdir(parents=True, exist_ok=True)
            from mlflow.tracking import MlflowClient

            with warnings.catch_warnings():  # MLflow's SQL store uses an option SQLAlchemy 2.1 deprecates
                warnings.filterwarnings("ignore", message=".*noload.*", category=DeprecationWarning)
                self._client_obj = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client_obj

    # -- reading ------------------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(_check_name(name))
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = sorted(m.name for m in self.client.search_registered_models(max_results=1000))
        hint = f"; registered models: {', '.join(known)}" if known else "; nothing is registered yet"
        raise RegistryError(f"no registered model '{name}' in {self.display_uri}{hint}. "
                            f"Register a run with `tuneloom models register RUN --name {name}`.")

    def _version(self, name: str, version: int | str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        self._model(name)
        try:
            return self.client.get_model_version(name, str(int(version)))
        except (MlflowException, ValueError) as exc:
            if isinstance(exc, MlflowException) and _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
        versions = ", ".join(str(v.version) for v in self.list_versions(name)) or "none"
        raise RegistryError(f"model '{name}' has no version {version}; its versions: {versions}")

    def _info(self, mv: ModelVersion, aliases: list[str] | None = None) -> ModelVersionInfo:
        tags = dict(mv.tags or {})
        return ModelVersionInfo(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id or None,
            source=mv.source,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((mv.creation_timestamp or 0) / 1000)),
            aliases=sorted(mv.aliases or aliases or []),
            gate=tags.get("gate"),
            lineage={k: tags[k] for k in LINEAGE_TAGS if k in tags},
            tags=tags,
        )

    @_mlflow_errors
    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of a registered model, oldest first."""
        # search_model_versions leaves ModelVersion.aliases empty; the registered model has them.
        by_version: dict[str, list[str]] = {}
        for alias, version in (self._model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        found, token = [], None
        while True:
            page = self.client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted((self._info(mv, by_version.get(str(mv.version))) for mv in found), key=lambda v: v.version)

    @_mlflow_errors
    def production(self, name: str) -> int | None:
        """The version holding the `production` alias, or None."""
        return _production(self._model(name))

    @_mlflow_errors
    def history(self, name: str) -> list[HistoryEntry]:
        """Every change of `production`, oldest first."""
        return _history(self._model(name))

    @_mlflow_errors
    def get(self, ref: str) -> ModelVersionInfo:
        """The version a reference names (see `resolve`), without fetching its files."""
        name, version, alias = parse_ref(ref)
        if alias is not None:
            from mlflow.exceptions import MlflowException

            self._model(name)
            try:
                return self._info(self.client.get_model_version_by_alias(name, alias))
            except MlflowException as exc:
                if _error_code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
            what = "no production version yet" if alias == PRODUCTION else f"no version with alias '{alias}'"
            raise RegistryError(f"model '{name}' has {what}; promote one with `tuneloom models promote {name} VERSION` "
                                f"or name a version: {name}:VERSION")
        if version == "latest":
            versions = self.list_versions(name)
            if not versions:
                raise RegistryError(f"model '{name}' has no versions yet")
            return versions[-1]
        return self._info(self._version(name, version))

    @_mlflow_errors
    def resolve(self, ref: str) -> ResolvedModel:
        """`name` (= its production version), `name:VERSION`, `name:latest` or `name@ALIAS` -> local model folder."""
        info = self.get(ref)
        uri = self.client.get_model_version_download_uri(info.name, str(info.version))
        if _is_local_uri(uri) and _local_path(uri).is_dir():
            path = _local_path(uri)
        else:  # a tracking server: fetch once into the workspace, then reuse
            target = self.workspace / "registry-cache" / info.name / str(info.version)
            if not (target / ".complete").is_file():
                from mlflow.artifacts import download_artifacts

                with atomic_dir(target) as tmp:
                    download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=self.uri)
                    (tmp / ".complete").write_text(uri + "\n")
            path = target / Path(uri.rstrip("/")).name
            if not path.is_dir():
                path = target
        return ResolvedModel(**info.model_dump(), path=path)

    # -- writing ------------------------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        folder = re.sub(r"[^\w.-]+", "-", name.removeprefix(f"{EXPERIMENT_PREFIX}/")).strip("-") or "default"
        location = (self.artifact_root / folder).as_uri() if self.artifact_root is not None else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    @_mlflow_errors
    def register_run(self, run_dir: str | Path, name: str) -> ModelVersionInfo:
        """Log a finished run's model/ (with params, tuned metrics, lineage) and make it a new version."""
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        _check_name(name)
        run_dir = Path(run_dir).resolve()
        model_dir = run_dir / "model"
        if not (run_dir / "config.yaml").is_file():
            raise RegistryError(f"{run_dir} is not a Tuneloom run folder (no config.yaml)")
        if not (run_dir / "summary.json").is_file():
            raise RegistryError(f"{run_dir} did not finish (no summary.json; see its status.json): only completed runs can be registered")
        if not model_dir.is_dir() or not any(model_dir.iterdir()):
            raise RegistryError(f"{run_dir} has no model/ folder to register")
        snapshot = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        gate = _read_gate(run_dir)
        eval_path = run_dir / "eval.json"
        eval_result = json.loads(eval_path.read_text(encoding="utf-8")) if eval_path.is_file() else {}
        lineage = _lineage(snapshot, run_dir, gate)

        try:
            self.client.create_registered_model(name, tags={"tuneloom.kind": "tuneloom-model"})
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        for existing in self.list_versions(name):
            if existing.lineage.get("run_dir") == str(run_dir):
                raise RegistryError(f"{run_dir.name} is already registered as {name} version {existing.version}")

        experiment = f"{EXPERIMENT_PREFIX}/{snapshot.get('project') or 'default'}"
        run = self.client.create_run(self._experiment_id(experiment), run_name=run_dir.name,
                                     tags={"tuneloom.run_dir": str(run_dir), "tuneloom.registered_as": name})
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            params = [Param(k, v) for k, v in _params(snapshot).items()]
            metrics = [Metric(k, v, now, 0) for k, v in _metrics(eval_result).items()]
            for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
                self.client.log_batch(run_id, params=params[i:i + 100])
            for i in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
            self.client.log_artifacts(run_id, str(model_dir), artifact_path="model")
            for extra in ("config.yaml", "summary.json", "eval.json", "gate.json"):
                if (run_dir / extra).is_file():
                    self.client.log_artifact(run_id, str(run_dir / extra), artifact_path="run")
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        source = f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
        mv = self.client.create_model_version(
            name, source, run_id=run_id, tags=lineage,
            description=f"{lineage.get('task', 'run')} from {run_dir.name} ({lineage.get('method', '?')} on {lineage.get('base_model', '?')})",
        )
        return self._info(self.client.get_model_version(name, mv.version))

    def _append_history(self, name: str, entry: dict[str, Any]) -> HistoryEntry:
        seq = max((e.seq for e in _history(self._model(name))), default=0) + 1
        record = HistoryEntry(seq=seq, time=_now(), **entry)
        self.client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{seq:06d}", record.model_dump_json(exclude={"seq"}))
        return record

    @_mlflow_errors
    def promote(self, name: str, version: int | str, force: bool = False, reason: str | None = None) -> HistoryEntry | None:
        """Point `production` at a version whose gate passed (or any version, with force and a reason).

        Returns the history entry, or None when the version already is production.
        """
        reason = (reason or "").strip()[:_MAX_REASON] or None
        if force and not reason:
            raise RegistryError("a forced promotion needs a reason: add --reason \"why this version must ship\"")
        mv = self._version(name, version)
        version = int(mv.version)
        current = _production(self._model(name))
        if current == version:
            return None
        gate = (mv.tags or {}).get("gate")
        if gate != "passed" and not force:
            if gate == "failed":
                failures = (mv.tags or {}).get("gate_failures")
                why = f"failed its regression gate ({failures})" if failures else "failed its regression gate"
            else:
                why = "has no gate result (its run had no gate.json when it was registered)"
            raise RegistryError(f"{name} version {version} {why}; not promoted. To ship it anyway: "
                                f"tuneloom models promote {name} {version} --force --reason \"...\"")
        if force:
            self.client.set_model_version_tag(name, str(version), "promotion_forced_reason", reason)
            self.client.set_model_version_tag(name, str(version), "promotion_forced_at", _now())
        self.client.set_registered_model_alias(name, PRODUCTION, str(version))
        return self._append_history(name, {"action": "promote", "from_version": current, "to_version": version,
                                           "forced": force, "reason": reason})

    @_mlflow_errors
    def rollback(self, name: str, reason: str | None = None) -> HistoryEntry:
        """Move `production` back to the version that held it before the current one."""
        model = self._model(name)
        current = _production(model)
        if current is None:
            raise RegistryError(f"model '{name}' has no production version to roll back")
        stack = _production_stack(_history(model))
        if stack and stack[-1] == current:
            stack.pop()
        if not stack:
            raise RegistryError(f"model '{name}' has no earlier production version to roll back to "
                                f"(version {current} is the first one promoted); see `tuneloom models history {name}`")
        target = stack[-1]
        self._version(name, target)  # still there?
        self.client.set_registered_model_alias(name, PRODUCTION, str(target))
        reason = (reason or "").strip()[:_MAX_REASON] or None
        return self._append_history(name, {"action": "rollback", "from_version": current, "to_version": target,
                                           "reason": reason})


def _production(model: Any) -> int | None:
    version = (getattr(model, "aliases", None) or {}).get(PRODUCTION)
    return int(version) if version is not None else None


def _history(model: Any) -> list[HistoryEntry]:
    entries = []
    for key, value in (model.tags or {}).items():
        if key.startswith(HISTORY_PREFIX):
            entries.append(HistoryEntry(seq=int(key[len(HISTORY_PREFIX):]), **json.loads(value)))
    return sorted(entries, key=lambda e: e.seq)


def _production_stack(entries: list[HistoryEntry]) -> list[int]:
    """Replay the history: a promote pushes its version, a rollback pops back to its target."""
    stack: list[int] = []
    for e in entries:
        if e.action == "promote":
            stack.append(e.to_version)
        else:
            while stack and stack[-1] != e.to_version:
                stack.pop()
            if not stack:
                stack.append(e.to_version)
    return stack


# --------------------------------------------------------------------------------------------
# module-level API (one registry per call; keep a ModelRegistry for many calls)


def register_run(run_dir: str | Path, name: str, workspace: str | Path, registry_uri: str | None = None) -> ModelVersionInfo:
    """Register a finished run's model/ as a new version of `name`."""
    return ModelRegistry(workspace, registry_uri).register_run(run_dir, name)


def promote(name: str, version: int | str, force: bool = False, reason: str | None = None, *,
            workspace: str | Path, registry_uri: str | None = None) -> HistoryEntry | None:
    """Set `production` to `version`; refuses a failed or missing gate unless force=True with a reason."""
    return ModelRegistry(workspace, registry_uri).promote(name, version, force, reason)


def rollback(name: str, reason: str | None = None, *, workspace: str | Path, registry_uri: str | None = None) -> HistoryEntry:
    """Move `production` back to the previous production version."""
    return ModelRegistry(workspace, registry_uri).rollback(name, reason)


def history(name: str, *, workspace: str | Path, registry_uri: str | None = None) -> list[HistoryEntry]:
    """Every change of `production`, oldest first."""
    return ModelRegistry(workspace, registry_uri).history(name)


def list_versions(name: str, *, workspace: str | Path, registry_uri: str | None = None) -> list[ModelVersionInfo]:
    """Every version of `name`, oldest first."""
    return ModelRegistry(workspace, registry_uri).list_versions(name)


def resolve(ref: str, *, workspace: str | Path, registry_uri: str | None = None) -> ResolvedModel:
    """`name`, `name:VERSION` or `name@ALIAS` -> the version's local model folder and lineage."""
    return ModelRegistry(workspace, registry_uri).resolve(ref)
