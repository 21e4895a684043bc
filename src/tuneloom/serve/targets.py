"""What a `model` field names: a registry version, a catalog base model, or a folder from the project file.

`name`, `name:VERSION` and `name@ALIAS` go through the registry (`name` alone is its production
version). References to a moving version (`name`, `name@alias`) are re-resolved after `alias_ttl_s`,
so a promotion is picked up without a restart, while a request keeps the version it started with.
A request can never name a path: references are checked against a pattern without '/', and only
names known to the registry, the catalog list or the project file lead to files.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

from tuneloom.artifacts import manifest_path, read_manifest, read_snapshot
from tuneloom.catalog import CATALOG, resolve_model
from tuneloom.config import Project, ServeConfig
from tuneloom.errors import TuneloomError
from tuneloom.tasks import kinds

Kind = Literal["chat", "embedding", "classification"]
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?::[A-Za-z0-9_.-]{1,64}|@[A-Za-z0-9_.-]{1,64})?$")


class UnknownModel(TuneloomError):
    """The request names a model this server does not serve (answered with 404)."""


@dataclass(frozen=True)
class Grounding:
    """A chat model's knowledge base and how its passages enter the prompt (the task's `rag` settings)."""

    knowledge: str
    top_k: int
    passage_chars: int

    @classmethod
    def of(cls, knowledge: str | None, rag: dict[str, Any] | None = None) -> Grounding | None:
        """From a knowledge base name and a task's `rag` section (as the project file or a run snapshot holds it)."""
        if knowledge is None:
            return None
        from tuneloom.config import RagConfig

        settings = RagConfig.model_validate(rag or {})
        return cls(knowledge=knowledge, top_k=settings.top_k, passage_chars=settings.passage_chars)


@dataclass(frozen=True)
class Target:
    """A resolved model: what to load and how to use it."""

    name: str  # registry / served name, what key scopes list
    served: str  # the exact version that answers, e.g. acme-support:3
    kind: Kind
    base_path: Path  # base model folder (or the full model itself)
    adapter_path: Path | None = None
    system_prompt: str | None = None
    labels: tuple[str, ...] = ()
    trust_remote_code: bool = False
    grounding: Grounding | None = None  # chat models that retrieve from a knowledge base on every request


def _kind_of_folder(path: Path) -> Kind:
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        task = json.loads(adapter.read_text()).get("task_type") or ""
        return "classification" if task == "SEQ_CLS" else "chat"
    arches = json.loads((path / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in arches):
        return "chat"
    if any(a.endswith("ForSequenceClassification") for a in arches):
        return "classification"
    return "embedding"


def _labels_of_folder(path: Path) -> tuple[str, ...]:
    config = path / "config.json"
    if not config.is_file():
        return ()
    id2label = json.loads(config.read_text()).get("id2label") or {}
    return tuple(id2label[k] for k in sorted(id2label, key=int))


class TargetResolver:
    def __init__(self, project: Project, settings: ServeConfig) -> None:
        self.project = project
        self.settings = settings
        self._lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._cache: dict[str, tuple[float, Target]] = {}
        self._registry: Any = None
        self.base_models = list(
            settings.base_models
            if settings.base_models is not None
            else dict.fromkeys(t.model for t in project.config.tasks if t.model in CATALOG)
        )
        unknown = [m for m in self.base_models if m not in CATALOG]
        if unknown:
            raise TuneloomError(
                f"serve.base_models: {unknown} are not catalog names; allowed: {sorted(CATALOG)}. "
                "Serve a folder with serve.models: [{name: ..., path: ...}] instead."
            )
        self.local = {m.name: m for m in settings.models}
        for m in settings.models:
            if not (project.root / m.path).is_dir():
                raise TuneloomError(f"serve.models '{m.name}': folder {project.root / m.path} does not exist")

    @property
    def registry(self) -> Any:
        with self._registry_lock:  # built once, whichever request comes first
            if self._registry is None:
                from tuneloom.registry.lookup import registry_for

                self._registry = registry_for(self.project)
            return self._registry

    def has_registry(self) -> bool:
        return self.project.config.registry.uri is not None or (self.project.workspace / "mlflow.db").is_file()

    def names(self) -> list[tuple[str, str]]:
        """(name, owner) of everything servable by name: registered models, base models, project folders."""
        out = [(name, "tuneloom-registry") for name in self._registered()]
        out += [(name, "tuneloom-catalog") for name in self.base_models]
        out += [(name, "tuneloom-project") for name in self.local]
        return out

    def _registered(self) -> list[str]:
        if not self.has_registry():
            return []
        return sorted(m.name for m in self.registry.client.search_registered_models(max_results=1000))

    def resolve(self, ref: str) -> Target:
        if not _REF.match(ref or ""):
            raise UnknownModel(f"'{ref}' is not a model name: use NAME, NAME:VERSION or NAME@ALIAS (see GET /v1/models)")
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(ref)
        if hit is not None and (hit[0] > now):
            return hit[1]
        target = self._grounded(self._resolve(ref))
        pinned = ":" in ref and ref.rpartition(":")[2].isdigit()  # a version number never changes
        with self._lock:
            self._cache[ref] = (float("inf") if pinned else now + self.settings.alias_ttl_s, target)
        return target

    def _grounded(self, target: Target) -> Target:
        """`serve.knowledge` names the model's knowledge base (over its task's); only chat models retrieve."""
        name = self.settings.knowledge.get(target.name)
        if name is not None:
            rag = target.grounding
            grounding = Grounding(name, rag.top_k, rag.passage_chars) if rag else Grounding.of(name)
            target = replace(target, grounding=grounding)
        if target.grounding is not None:
            if target.kind != "chat":
                raise TuneloomError(f"model '{target.name}' is a {target.kind} model: only chat models retrieve from knowledge")
            self.project.config.knowledge_base(target.grounding.knowledge)  # an unknown name is refused, naming the known ones
        return target

    def _resolve(self, ref: str) -> Target:
        name = re.split("[:@]", ref, maxsplit=1)[0]
        if name in self.local and name == ref:
            return self._local(name)
        if name in self.base_models and name == ref:
            path = resolve_model(name)
            return Target(name=name, served=name, kind=_kind_of_folder(path), base_path=path, labels=_labels_of_folder(path))
        if self.has_registry():
            from tuneloom.registry import RegistryError

            try:
                return self._registered_target(self.registry.resolve(ref))
            except RegistryError as exc:
                if "no registered model" not in str(exc):
                    raise UnknownModel(str(exc)) from None
        raise UnknownModel(f"model '{ref}' is not served here; GET /v1/models lists the models your key may use")

    def _local(self, name: str) -> Target:
        m = self.local[name]
        path = (self.project.root / m.path).resolve()
        kind = _kind_of_folder(path)
        if (path / "adapter_config.json").is_file():
            base_ref = m.base or json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base_ref:
                raise TuneloomError(f"serve.models '{name}': set `base:` (the adapter does not name its base model)")
            base = resolve_model(
                base_ref if base_ref in CATALOG or Path(base_ref).is_absolute() else str((self.project.root / base_ref).resolve())
            )
            return Target(
                name=name,
                served=name,
                kind=kind,
                base_path=base,
                adapter_path=path,
                system_prompt=m.system_prompt,
                labels=_labels_of_folder(base),
                grounding=Grounding.of(m.knowledge),
            )
        return Target(
            name=name,
            served=name,
            kind=kind,
            base_path=path,
            system_prompt=m.system_prompt,
            labels=_labels_of_folder(path),
            grounding=Grounding.of(m.knowledge),
        )

    def _registered_target(self, version: Any) -> Target:
        lineage, path = version.lineage, Path(version.path)
        snapshot_dir = path.parent / "run"
        task = read_snapshot(snapshot_dir).task if (snapshot_dir / "config.yaml").is_file() else {}
        task_kind = kinds().get(lineage.get("task_type") or "")
        kind = cast(Kind, task_kind.serve_as if task_kind is not None and task_kind.serve_as else "chat")
        adapter = (path / "adapter_config.json").is_file()
        base = path
        if adapter:
            local = lineage.get("base_model_path")
            base = Path(local) if local and Path(local).is_dir() else resolve_model(lineage["base_model"])
        labels: tuple[str, ...] = ()
        if task_kind is not None and task_kind.head == "sequence_classification":  # its head needs the class names
            manifest = manifest_path(lineage.get("dataset_path", ""))
            labels = tuple(read_manifest(manifest.parent).labels) if manifest.is_file() else _labels_of_folder(path)
            if not labels:
                raise TuneloomError(
                    f"{version.name}:{version.version}: its class labels are unknown (dataset {manifest.parent} is gone)"
                )
        return Target(
            name=version.name,
            served=f"{version.name}:{version.version}",
            kind=kind,
            base_path=base,
            adapter_path=path if adapter else None,
            labels=labels,
            system_prompt=(task.get("data") or {}).get("system_prompt"),
            trust_remote_code=bool(task.get("trust_remote_code", False)),
            grounding=Grounding.of(task.get("knowledge"), task.get("rag")),
        )
