"""The canary: registry alias and history, routing shares (hashed and seeded), the monitor's rules
(automatic rollback and promotion), and a resolver that follows the alias without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, write_project
from tests.registry.test_registry import make_run
from tuneloom.artifacts import read_snapshot, write_snapshot
from tuneloom.cli import app
from tuneloom.config import CanaryConfig, ServeConfig, load_project
from tuneloom.iterate.monitor import arm_stats, decide, monitor_canary
from tuneloom.registry import ModelRegistry, RegistryError
from tuneloom.serve.canary import CanaryRouter, hashed_fraction
from tuneloom.serve.dependencies import resolve_target
from tuneloom.serve.feedback import CompletionRow, FeedbackRow, FeedbackStore
from tuneloom.serve.targets import Target, TargetResolver, UnknownModel

PROD = Target(name="qa", served="qa:1", kind="chat", base_path=Path("/nowhere"))
CAN = Target(name="qa", served="qa:2", kind="chat", base_path=Path("/nowhere"))


class FakeResolver:
    settings = ServeConfig(alias_ttl_s=60)

    def __init__(self, canary: bool = True) -> None:
        self.has_canary = canary
        self.calls = 0

    def resolve(self, ref: str) -> Target:
        self.calls += 1
        if ref == "qa@canary":
            if not self.has_canary:
                raise UnknownModel("model 'qa' has no version with alias 'canary'")
            return CAN
        return PROD


def test_hashed_routing_share_is_close_and_sticky() -> None:
    router = CanaryRouter(FakeResolver(), CanaryConfig(share=0.3, seed=7))  # type: ignore[arg-type]
    picks = [router.route("qa", PROD, f"req-{i}").served for i in range(4000)]
    share = picks.count("qa:2") / len(picks)
    assert 0.27 < share < 0.33
    assert all(router.route("qa@production", PROD, f"req-{i}").served == picks[i] for i in range(200))
    assert hashed_fraction(7, "req-1") != hashed_fraction(8, "req-1")


def test_random_routing_is_seeded_and_pinned_refs_stay() -> None:
    def draw(seed: int) -> list[str]:
        router = CanaryRouter(FakeResolver(), CanaryConfig(share=0.5, routing="random", seed=seed))  # type: ignore[arg-type]
        return [router.route("qa", PROD, "same-id").served for _ in range(400)]

    first = draw(1)
    assert first == draw(1) and first != draw(2)
    assert 0.4 < first.count("qa:2") / 400 < 0.6  # random routing ignores the request id
    router = CanaryRouter(FakeResolver(), CanaryConfig(share=1.0))  # type: ignore[arg-type]
    assert router.route("qa:1", PROD, "x") is PROD and router.route("qa@blue", PROD, "x") is PROD
    assert router.route("qa", PROD, "x") is CAN
    assert CanaryRouter(FakeResolver(), CanaryConfig(share=0.0)).route("qa", PROD, "x") is PROD  # type: ignore[arg-type]


def test_no_canary_is_remembered_for_the_alias_ttl() -> None:
    resolver = FakeResolver(canary=False)
    router = CanaryRouter(resolver, CanaryConfig(share=1.0))  # type: ignore[arg-type]
    assert all(router.route("qa", PROD, str(i)) is PROD for i in range(50))
    assert resolver.calls == 1


def _registered(tmp_path: Path) -> tuple[Path, ModelRegistry, str]:
    """A project with three gated runs of its chat task registered; version 1 in production."""
    project_file = write_project(tmp_path, "smollm2-135m-instruct", "all-minilm-l6-v2")
    ws = tmp_path / "workspace"
    registry = ModelRegistry(ws)
    for seed, gate in ((1, True), (2, True), (3, False)):
        run = make_run(ws, project_file, CHAT_TASK, f"2026010{seed}-100000", gate=gate, seed=seed)
        snapshot = read_snapshot(run)
        write_snapshot(run, snapshot.model_copy(update={"base_model_path": str(tmp_path)}))
        registry.register_run(run, CHAT_TASK)
    registry.promote(CHAT_TASK, 1)
    return project_file, registry, CHAT_TASK


def test_registry_canary_alias_and_history(tmp_path: Path) -> None:
    _, registry, name = _registered(tmp_path)
    with pytest.raises(RegistryError, match="failed its regression gate"):
        registry.start_canary(name, 3)
    with pytest.raises(RegistryError, match="production already"):
        registry.start_canary(name, 1)
    with pytest.raises(RegistryError, match="no canary"):
        registry.promote_canary(name)
    registry.start_canary(name, 2, reason="try v2")
    assert registry.canary(name) == 2 and registry.production(name) == 1
    entry = registry.promote_canary(name, reason="better")
    assert (entry.action, entry.from_version, entry.to_version, entry.reason) == ("promote", 1, 2, "better")
    assert registry.canary(name) is None and registry.production(name) == 2
    assert registry.rollback(name).to_version == 1  # canary entries do not disturb the production stack
    registry.start_canary(name, 2)
    stopped = registry.rollback_canary(name, reason="worse")
    assert (stopped.action, stopped.from_version, stopped.to_version) == ("canary_rollback", 2, 1)
    assert [e.action for e in registry.history(name)] == ["promote", "canary", "promote", "rollback", "canary", "canary_rollback"]


def test_running_resolver_follows_the_canary_alias(tmp_path: Path) -> None:
    project_file, registry, name = _registered(tmp_path)
    project = load_project(project_file)
    resolver = TargetResolver(project, ServeConfig(alias_ttl_s=0))
    router = CanaryRouter(resolver, CanaryConfig(share=1.0))
    state = type("S", (), {"resolver": resolver, "router": router})()
    served = lambda: asyncio.run(resolve_target(state, name, None, ("chat",), "r1")).served  # noqa: E731
    assert served() == f"{name}:1"
    registry.start_canary(name, 2)
    assert served() == f"{name}:2"
    registry.rollback_canary(name, reason="drill")
    assert served() == f"{name}:1"


def _traffic(store: FeedbackStore, served: str, n: int, up: int, corrected: int, latency: int = 100) -> None:
    """`n` answers of `served`: the first `up` rated up, the next `corrected` rated down with a correction
    (one transaction: the store's own calls commit each row durably, which is slow for thousands)."""
    now = dt.datetime.now(dt.UTC)
    with Session(store.engine) as session, session.begin():
        for i in range(n):
            cid = f"{served}-{latency}-{n}-{i}"
            session.add(
                CompletionRow(
                    id=cid, created=now, endpoint="chat.completion", model="m", served=served, latency_ms=latency + i % 7
                )
            )
            session.flush()
            if i < up + corrected:
                down = i >= up
                session.add(
                    FeedbackRow(
                        completion_id=cid,
                        created=now,
                        rating=1 if down else 5,
                        rating_kind="thumbs",
                        correction="the right answer" if down else None,
                        tags=[],
                    )
                )


def test_monitor_rolls_back_a_worse_canary(tmp_path: Path) -> None:
    project_file, registry, name = _registered(tmp_path)
    project = load_project(project_file)
    registry.start_canary(name, 2, reason="candidate")
    store = FeedbackStore.for_workspace(project.workspace, None)
    _traffic(store, f"{name}:1", n=80, up=70, corrected=5)
    _traffic(store, f"{name}:2", n=80, up=20, corrected=50)
    shown = CliRunner().invoke(app, ["monitor", "-c", str(project_file), "--task", CHAT_TASK, "--dry-run"])
    assert shown.exit_code == 0 and "decision: rollback" in shown.output and registry.canary(name) == 2
    report = monitor_canary(project, CHAT_TASK)
    assert report.decision == "rollback" and report.applied
    assert report.arms["canary"].rated == 70 and report.arms["production"].thumbs_up == 70
    assert registry.canary(name) is None and registry.production(name) == 1
    last = registry.history(name)[-1]
    assert last.action == "canary_rollback" and "thumbs-up rate" in (last.reason or "")
    assert monitor_canary(project, CHAT_TASK).decision == "none"


def test_monitor_waits_then_promotes(tmp_path: Path) -> None:
    project_file, registry, name = _registered(tmp_path)
    project = load_project(project_file)
    registry.start_canary(name, 2)
    store = FeedbackStore.for_workspace(project.workspace, None)
    _traffic(store, f"{name}:1", n=10, up=8, corrected=1)
    _traffic(store, f"{name}:2", n=10, up=9, corrected=0)
    waiting = monitor_canary(project, CHAT_TASK)
    assert waiting.decision == "wait" and "needs 50" in waiting.reason and registry.canary(name) == 2
    rules = CanaryConfig(min_requests=50, min_rated=20, max_drop=0.1)
    old = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    prod = arm_stats(store, f"{name}:1", old, 0.95)
    _traffic(store, "x:1", n=400, up=380, corrected=4)
    _traffic(store, "x:2", n=400, up=384, corrected=2)
    decision, reason, up, _ = decide(rules, arm_stats(store, "x:1", old, 0.95), arm_stats(store, "x:2", old, 0.95))
    assert decision == "promote" and up[1] > -0.1, reason
    assert prod.requests == 10 and 0 < prod.up_interval[0] < 0.8 < prod.up_interval[1] <= 1
    _traffic(store, f"{name}:1", n=400, up=380, corrected=0, latency=10_000)
    _traffic(store, f"{name}:2", n=400, up=385, corrected=0, latency=10_000)
    report = monitor_canary(project, CHAT_TASK, apply=True)
    assert report.decision == "promote" and report.applied and registry.production(name) == 2
    assert registry.history(name)[-1].reason.startswith("monitor: canary")
