"""The serve app's dependencies and routing without a model: API keys and scopes, admission (503),
model resolution (404/403/400), validation errors, the body limit, and /v1/models, /ready, /metrics.

The backend and target resolver are fakes, so these run in a second; test_serve.py covers real models.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tuneloom.config import ServeConfig
from tuneloom.serve.app import app_for
from tuneloom.serve.auth import KeyStore
from tuneloom.serve.dependencies import check_scope, resolve_target
from tuneloom.serve.feedback import FeedbackStore
from tuneloom.serve.knowledge import KnowledgeService, open_for
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.responses import ApiError
from tuneloom.serve.state import ServerState
from tuneloom.serve.targets import Target, UnknownModel

TARGETS = {
    name: Target(name=name, served=f"{name}:1", kind=kind, base_path=Path("/nowhere"))  # type: ignore[arg-type]
    for name, kind in (("talk", "chat"), ("vec", "embedding"), ("cls", "classification"))
}
CHAT = [{"role": "user", "content": "hi"}]


class FakeResolver:
    def resolve(self, ref: str) -> Target:
        if ref not in TARGETS:
            raise UnknownModel(f"model '{ref}' is not served here")
        return TARGETS[ref]

    def names(self) -> list[tuple[str, str]]:
        return [(name, "tuneloom-project") for name in TARGETS]


class FakeBackend:
    name = "fake"
    closed = False

    def load(self) -> tuple[int, int]:
        return 0, 0

    def embed(self, target: Target, texts: list[str], max_tokens: int) -> tuple[list[list[float]], int]:
        return [[1.0, 0.0] for _ in texts], 3 * len(texts)

    def close(self, grace_s: float) -> None:
        self.closed = True


@pytest.fixture
def state(tmp_path: Path) -> ServerState:
    settings = ServeConfig(limits={"max_body_bytes": 2000, "max_inputs": 2})
    metrics = ServeMetrics()
    return ServerState(
        project=None,
        settings=settings,
        resolver=FakeResolver(),  # type: ignore[arg-type]
        backend=FakeBackend(),
        keys=KeyStore(tmp_path / "keys.json"),
        feedback=FeedbackStore(f"sqlite:///{tmp_path}/feedback.db"),
        metrics=metrics,
        redactor=None,
        knowledge=KnowledgeService(open_for(None), metrics, 0),  # no project: no knowledge base is ever opened
    )


def call(client: TestClient, path: str, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = client.post(path, json=body, headers=headers)
    return r.status_code, r.json()


def test_key_scope_and_model_resolution(state: ServerState) -> None:
    _, everything = state.keys.create(["*"])
    _, talk_only = state.keys.create(["talk"])
    with TestClient(app_for(state)) as client:
        status, body = call(client, "/v1/chat/completions", {"model": "talk"}, None)  # the key is checked first
        assert (status, body["error"]["code"]) == (401, "invalid_api_key")
        assert body["error"]["type"] == "authentication_error"
        assert call(client, "/v1/embeddings", {"model": "vec", "input": "x"}, "tlk_x_y")[0] == 401
        status, body = call(client, "/v1/embeddings", {"model": "vec", "input": "x"}, talk_only)
        assert (status, body["error"]["code"]) == (403, "model_not_allowed")
        assert body["error"]["message"] == "this API key is not allowed to use model 'vec'"
        status, body = call(client, "/v1/embeddings", {"model": "nope", "input": "x"}, everything)
        assert (status, body["error"]["code"]) == (404, "model_not_found")
        status, body = call(client, "/v1/classify", {"model": "vec", "input": "x"}, everything)
        assert (status, body["error"]["code"]) == (400, "wrong_model_kind")
        assert body["error"]["message"] == ("model 'vec' is a embedding model; this endpoint needs a classification model")
        status, body = call(client, "/v1/embeddings", {"model": "vec", "input": ["a", "b", "c"]}, everything)
        assert (status, body["error"]["code"]) == (400, "too_many_inputs")
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {talk_only}"}).json()
        assert [m["id"] for m in models["data"]] == ["talk"]
        metrics = client.get("/metrics").text
    assert 'tuneloom_rejected_total{reason="invalid_api_key"} 2.0' in metrics
    assert 'tuneloom_rejected_total{reason="model_not_allowed"} 1.0' in metrics
    assert 'tuneloom_requests_total{endpoint="/v1/embeddings",status="404"} 1.0' in metrics


def test_validation_errors_are_reported_once(state: ServerState) -> None:
    _, key = state.keys.create(["*"])
    with TestClient(app_for(state)) as client:
        status, body = call(client, "/v1/chat/completions", {"model": "talk", "messages": [], "temperature": 9}, key)
        assert status == 400 and body["error"]["code"] is None
        assert body["error"]["message"].count("messages:") == 1 and body["error"]["message"].count("temperature:") == 1
        too_long = {"model": "talk", "messages": CHAT, "max_tokens": 10**6}
        status, body = call(client, "/v1/chat/completions", too_long, key)
        assert (status, body["error"]["code"]) == (400, "max_tokens_over_limit")
        status, body = call(client, "/v1/chat/completions", {"model": "talk", "messages": CHAT, "x": "y" * 3000}, key)
        assert (status, body["error"]["code"]) == (413, "body_too_large")


def test_draining_refuses_with_retry_after_and_auth_off_takes_no_key(state: ServerState) -> None:
    state.settings.auth = False
    with TestClient(app_for(state)) as client:
        ok = client.post("/v1/embeddings", json={"model": "vec", "input": ["a", "b"], "encoding_format": "base64"})
        assert ok.status_code == 200 and ok.json()["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
        assert base64.b64decode(ok.json()["data"][1]["embedding"]) == b"\x00\x00\x80?" + bytes(4)
        assert client.get("/ready").json() == {"ready": True, "backend": "fake", "running": 0, "waiting": 0}
        state.draining = True
        refused = client.post("/v1/embeddings", json={"model": "vec", "input": "a"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert refused.json()["error"]["code"] == "unavailable"
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert client.get("/health").json() == {"status": "ok"}
    assert state.backend.closed and not state.ready


def test_check_scope_and_resolve_target(state: ServerState) -> None:
    record, _ = state.keys.create(["talk"])
    check_scope(None, "anything")
    check_scope(record, "talk")
    with pytest.raises(ApiError) as denied:
        check_scope(record, "vec")
    assert (denied.value.status, denied.value.kind) == (403, "permission_error")
    assert asyncio.run(resolve_target(state, "talk", record, ("chat",))) is TARGETS["talk"]
    with pytest.raises(ApiError) as wrong:
        asyncio.run(resolve_target(state, "talk", None, ("embedding",)))
    assert (wrong.value.status, wrong.value.code) == (400, "wrong_model_kind")


def test_the_v1_api_needs_the_serve_scope(state: ServerState) -> None:
    _, reviewer = state.keys.create(["*"], "support", scopes=["reviewer"])
    _, admin = state.keys.create(["*"], "lead", scopes=["admin"])
    _, both = state.keys.create(["*"], "portal", scopes=["serve", "reviewer"])
    embed = {"model": "vec", "input": "x"}
    with TestClient(app_for(state)) as client:
        status, body = call(client, "/v1/embeddings", embed, reviewer)
        assert (status, body["error"]["code"], body["error"]["type"]) == (403, "missing_scope", "permission_error")
        assert "lacks the 'serve' scope" in body["error"]["message"] and "holds: reviewer" in body["error"]["message"]
        for path, payload in (("/v1/search", {"query": "x"}), ("/v1/feedback", {"completion_id": "x", "rating": "up"})):
            assert call(client, path, payload, reviewer)[1]["error"]["code"] == "missing_scope", path
        listed = client.get("/v1/models", headers={"Authorization": f"Bearer {reviewer}"})
        assert listed.status_code == 403 and listed.json()["error"]["code"] == "missing_scope"
        assert call(client, "/v1/embeddings", embed, admin)[0] == 200  # admin holds every scope
        assert call(client, "/v1/embeddings", embed, both)[0] == 200
