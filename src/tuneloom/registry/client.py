"""`ModelRegistry`: one MLflow model registry, the workspace's or a tracking server's.

Local by default: tracking and registry URI `sqlite:///<workspace>/mlflow.db`, artifacts under
`<workspace>/mlruns`; nothing goes to the network. With `registry_uri` set to a tracking server
(`http(s)://...`) the server stores runs, versions and (proxied) artifacts; credentials come from
MLflow's own environment variables (`MLFLOW_TRACKING_TOKEN`, ...), never from Tuneloom files, and
the URI itself is never logged.

Each registered version carries lineage tags (base model, dataset version, run folder, task type,
gate result). The alias `production` marks the version in service, the alias `canary` a candidate
that answers a share of production's traffic; every change of either is recorded in its history
(see `history`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.atomic import atomic_dir
from tuneloom.registry.errors import NotRegistered, RegistryError, VersionNotFound
from tuneloom.registry.history import (
    HistoryEntry,
    clean_reason,
    gate_refusal,
    history_of,
    next_entry,
    production_of,
    rollback_target,
    utc_now,
)
from tuneloom.registry.lineage import ModelVersionInfo, ResolvedModel, RunLineage, read_lineage, version_info
from tuneloom.registry.mlflow_setup import error_code, mlflow_errors, new_client
from tuneloom.registry.refs import CANARY, PRODUCTION, check_name, parse_ref
from tuneloom.registry.uris import is_local_uri, local_path, redact_uri

if TYPE_CHECKING:
    from mlflow.entities import Experiment
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

EXPERIMENT_PREFIX = "tuneloom"
_RUN_FILES = ("config.yaml", "summary.json", "eval.json", "gate.json")


class ModelRegistry:
    """A connection to one registry: the workspace's SQLite file, or a tracking server."""

    def __init__(self, workspace: str | Path, registry_uri: str | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.uri = registry_uri or f"sqlite:///{self.workspace / 'mlflow.db'}"
        # A tracking server keeps (or proxies) the artifacts; a database URI keeps them in the workspace.
        remote = self.uri.startswith(("http://", "https://", "databricks"))
        self.artifact_root: Path | None = None if remote else self.workspace / "mlruns"
        # The workspace's own database follows the workspace when it is copied (see `experiment_id`).
        self._own_database = registry_uri is None
        self.display_uri = redact_uri(self.uri)
        self._client_obj: MlflowClient | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> MlflowClient:
        with self._client_lock:
            if self._client_obj is None:
                if self.uri.startswith("sqlite:"):
                    self.workspace.mkdir(parents=True, exist_ok=True)
                self._client_obj = new_client(self.uri)
            return self._client_obj

    # -- reading ------------------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(check_name(name))
        except MlflowException as exc:
            if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = sorted(m.name for m in self.client.search_registered_models(max_results=1000))
        hint = f"; registered models: {', '.join(known)}" if known else "; nothing is registered yet"
        raise NotRegistered(
            f"no registered model '{name}' in {self.display_uri}{hint}. "
            f"Register a run with `tuneloom models register RUN --name {name}`."
        )

    def _version(self, name: str, version: int | str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        self._model(name)
        try:
            return self.client.get_model_version(name, str(int(version)))
        except (MlflowException, ValueError) as exc:
            if isinstance(exc, MlflowException) and error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
        versions = ", ".join(str(v.version) for v in self.list_versions(name)) or "none"
        raise VersionNotFound(f"model '{name}' has no version {version}; its versions: {versions}")

    @mlflow_errors
    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of a registered model, oldest first."""
        # search_model_versions leaves ModelVersion.aliases empty; the registered model has them.
        by_version: dict[str, list[str]] = {}
        for alias, version in (self._model(name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        found: list[ModelVersion] = []
        token = None
        while True:
            page = self.client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted((version_info(mv, by_version.get(str(mv.version))) for mv in found), key=lambda v: v.version)

    @mlflow_errors
    def production(self, name: str) -> int | None:
        """The version holding the `production` alias, or None."""
        return production_of(self._model(name))

    @mlflow_errors
    def has_model(self, name: str) -> bool:
        """Whether `name` is registered (without the error `_model` raises when it is not)."""
        try:
            self._model(name)
        except NotRegistered:
            return False
        return True

    @mlflow_errors
    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        """Add tags (lineage such as the feedback a version was trained on) to a version."""
        self._version(name, version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, value)

    @mlflow_errors
    def canary(self, name: str) -> int | None:
        """The version holding the `canary` alias, or None."""
        return production_of(self._model(name), CANARY)

    @mlflow_errors
    def history(self, name: str) -> list[HistoryEntry]:
        """Every change of `production` and `canary`, oldest first."""
        return history_of(self._model(name))

    @mlflow_errors
    def get(self, ref: str) -> ModelVersionInfo:
        """The version a reference names (see `resolve`), without fetching its files."""
        name, version, alias = parse_ref(ref)
        if alias is not None:
            from mlflow.exceptions import MlflowException

            self._model(name)
            try:
                return version_info(self.client.get_model_version_by_alias(name, alias))
            except MlflowException as exc:
                if error_code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
            what = "no production version yet" if alias == PRODUCTION else f"no version with alias '{alias}'"
            raise VersionNotFound(
                f"model '{name}' has {what}; promote one with "
                f"`tuneloom models promote {name} VERSION` or name a version: {name}:VERSION"
            )
        if version == "latest":
            versions = self.list_versions(name)
            if not versions:
                raise VersionNotFound(f"model '{name}' has no versions yet")
            return versions[-1]
        assert version is not None  # parse_ref gives a version whenever it gives no alias
        return version_info(self._version(name, version))

    @mlflow_errors
    def resolve(self, ref: str) -> ResolvedModel:
        """`name` (= its production version), `name:VERSION`, `name:latest` or `name@ALIAS` -> local model folder."""
        info = self.get(ref)
        uri = self.client.get_model_version_download_uri(info.name, str(info.version))
        path = self._in_this_workspace(local_path(uri), info.run_id) if is_local_uri(uri) else None
        if path is None or not path.is_dir():
            path = self._download(info, uri)
        return ResolvedModel(**info.model_dump(), path=path)

    def _in_this_workspace(self, path: Path, run_id: str | None) -> Path:
        """A version's files in this workspace's mlruns/ when the database came from a copied workspace."""
        if not self._own_database or self.artifact_root is None or not run_id or run_id not in path.parts:
            return path
        here = self.artifact_root.joinpath(*path.parts[path.parts.index(run_id) - 1 :])
        return here if here.is_dir() else path

    def _download(self, info: ModelVersionInfo, uri: str) -> Path:
        """A tracking server's version: fetched once into the workspace, then reused."""
        target = self.workspace / "registry-cache" / info.name / str(info.version)
        if not (target / ".complete").is_file():
            from mlflow.artifacts import download_artifacts

            with atomic_dir(target) as tmp:
                download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=self.uri)
                (tmp / ".complete").write_text(uri + "\n")
        path = target / Path(uri.rstrip("/")).name
        return path if path.is_dir() else target

    # -- writing ------------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of MLflow experiment `name`, created (with its artifacts in the workspace) if new."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            self._keep_artifacts_here(experiment)
            return experiment.experiment_id
        folder = re.sub(r"[^\w.-]+", "-", name.removeprefix(f"{EXPERIMENT_PREFIX}/")).strip("-") or "default"
        location = (self.artifact_root / folder).as_uri() if self.artifact_root is not None else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # created meanwhile by another process?
            created = self.client.get_experiment_by_name(name) if error_code(exc) == "RESOURCE_ALREADY_EXISTS" else None
            if created is None:
                raise
            return created.experiment_id

    def _keep_artifacts_here(self, experiment: Experiment) -> None:
        """Point an experiment of a copied workspace at this workspace's mlruns/, not the original's.

        MLflow stores absolute artifact locations and has no call to change one, so the workspace's
        own SQLite file is updated directly (one row; a configured registry is never touched).
        """
        if not self._own_database or self.artifact_root is None or not is_local_uri(experiment.artifact_location):
            return
        stored = local_path(experiment.artifact_location)
        if stored.parent.name != "mlruns" or stored.parent == self.artifact_root:
            return
        with closing(sqlite3.connect(self.workspace / "mlflow.db")) as db, db:
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                ((self.artifact_root / stored.name).as_uri(), int(experiment.experiment_id)),
            )

    @mlflow_errors
    def register_run(self, run_dir: str | Path, name: str) -> ModelVersionInfo:
        """Log a finished run's model/ (with params, tuned metrics, lineage) and make it a new version."""
        from mlflow.exceptions import MlflowException

        check_name(name)
        run = read_lineage(run_dir)
        lineage = run.tags()
        try:
            self.client.create_registered_model(name, tags={"tuneloom.kind": "tuneloom-model"})
        except MlflowException as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
        for existing in self.list_versions(name):
            if existing.lineage.get("run_dir") == str(run.run_dir):
                raise RegistryError(f"{run.run_dir.name} is already registered as {name} version {existing.version}")
        run_id = self._log_run(run, name)
        source = f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
        description = (
            f"{lineage.get('task', 'run')} from {run.run_dir.name} "
            f"({lineage.get('method', '?')} on {lineage.get('base_model', '?')})"
        )
        mv = self.client.create_model_version(name, source, run_id=run_id, tags=lineage, description=description)
        return version_info(self.client.get_model_version(name, mv.version))

    def _log_run(self, run: RunLineage, name: str) -> str:
        """An MLflow run holding the run folder's params, tuned metrics, model/ and files; its id."""
        from mlflow.entities import Metric, Param

        experiment = f"{EXPERIMENT_PREFIX}/{run.snapshot.project or 'default'}"
        run_id = self.client.create_run(
            self.experiment_id(experiment),
            run_name=run.run_dir.name,
            tags={"tuneloom.run_dir": str(run.run_dir), "tuneloom.registered_as": name},
        ).info.run_id
        try:
            now = int(time.time() * 1000)
            params = [Param(k, v) for k, v in run.params().items()]
            metrics = [Metric(k, v, now, 0) for k, v in run.metrics().items()]
            for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
                self.client.log_batch(run_id, params=params[i : i + 100])
            for i in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
            self.client.log_artifacts(run_id, str(run.model_dir), artifact_path="model")
            for extra in _RUN_FILES:
                if (run.run_dir / extra).is_file():
                    self.client.log_artifact(run_id, str(run.run_dir / extra), artifact_path="run")
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def _append_history(self, name: str, **fields: Any) -> HistoryEntry:
        key, value, entry = next_entry(self._model(name), **fields)
        self.client.set_registered_model_tag(name, key, value)
        return entry

    @mlflow_errors
    def promote(self, name: str, version: int | str, force: bool = False, reason: str | None = None) -> HistoryEntry | None:
        """Point `production` at a version whose gate passed (or any version, with force and a reason).

        Returns the history entry, or None when the version already is production.
        """
        reason = clean_reason(reason)
        if force and not reason:
            raise RegistryError('a forced promotion needs a reason: add --reason "why this version must ship"')
        mv = self._version(name, version)
        version = int(mv.version)
        current = production_of(self._model(name))
        if current == version:
            return None
        refusal = gate_refusal(name, version, dict(mv.tags or {}))
        if refusal and not force:
            raise RegistryError(refusal)
        if force:
            self.client.set_model_version_tag(name, str(version), "promotion_forced_reason", reason)
            self.client.set_model_version_tag(name, str(version), "promotion_forced_at", utc_now())
        self.client.set_registered_model_alias(name, PRODUCTION, str(version))
        return self._append_history(name, action="promote", from_version=current, to_version=version, forced=force, reason=reason)

    @mlflow_errors
    def rollback(self, name: str, reason: str | None = None) -> HistoryEntry:
        """Move `production` back to the version that held it before the current one."""
        current, target = rollback_target(name, self._model(name))
        self._version(name, target)  # still there?
        self.client.set_registered_model_alias(name, PRODUCTION, str(target))
        return self._append_history(name, action="rollback", from_version=current, to_version=target, reason=clean_reason(reason))

    # -- canary -------------------------------------------------------------------------------

    @mlflow_errors
    def start_canary(self, name: str, version: int | str, reason: str | None = None, force: bool = False) -> HistoryEntry:
        """Point `canary` at a version whose gate passed (any version with force and a reason); not at production."""
        reason = clean_reason(reason)
        if force and not reason:
            raise RegistryError('a forced canary needs a reason: add --reason "why this version must be tried"')
        mv = self._version(name, version)
        version = int(mv.version)
        model = self._model(name)
        if production_of(model) == version:
            raise RegistryError(f"{name} version {version} is production already; a canary must be another version")
        refusal = gate_refusal(name, version, dict(mv.tags or {}))
        if refusal and not force:
            raise RegistryError(refusal.replace("not promoted", "not made the canary"))
        previous = production_of(model, CANARY)
        self.client.set_registered_model_alias(name, CANARY, str(version))
        return self._append_history(name, action="canary", from_version=previous, to_version=version, forced=force, reason=reason)

    @mlflow_errors
    def promote_canary(self, name: str, reason: str | None = None) -> HistoryEntry:
        """Make the canary production (its gate was checked when it became the canary) and clear `canary`.

        Production moves first: a crash before the canary alias is cleared leaves canary == production,
        which routes nothing anywhere new and is cleared by the next call.
        """
        model = self._model(name)
        version = production_of(model, CANARY)
        if version is None:
            raise RegistryError(f"model '{name}' has no canary to promote; start one with `tuneloom iterate` or the API")
        current = production_of(model)
        if current != version:
            self.client.set_registered_model_alias(name, PRODUCTION, str(version))
        self.client.delete_registered_model_alias(name, CANARY)
        return self._append_history(name, action="promote", from_version=current, to_version=version, reason=clean_reason(reason))

    @mlflow_errors
    def rollback_canary(self, name: str, reason: str | None = None) -> HistoryEntry:
        """Stop the canary: clear `canary`, so production answers all its traffic again."""
        model = self._model(name)
        version = production_of(model, CANARY)
        if version is None:
            raise RegistryError(f"model '{name}' has no canary to roll back")
        self.client.delete_registered_model_alias(name, CANARY)
        return self._append_history(
            name,
            action="canary_rollback",
            from_version=version,
            to_version=production_of(model) or version,
            reason=clean_reason(reason),
        )
