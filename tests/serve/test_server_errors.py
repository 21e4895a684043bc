"""Server errors without a model (issue 17): a failure inside a route is a 500 in OpenAI's format that
counts in /metrics and the access log; a dependency that does not load makes /ready fail; an oversized
chunked body is a 413; the feedback database is private; admission refuses what would time out.
"""

from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.serve.test_dependencies import CHAT, state  # noqa: F401  # the fake-backend server state fixture
from tuneloom.serve.app import app_for
from tuneloom.serve.engine import Overloaded, SamplingParams, Sequence
from tuneloom.serve.feedback import FeedbackStore
from tuneloom.serve.state import ServerState

JSON = {"Content-Type": "application/json"}


def test_internal_error_is_a_counted_logged_openai_500(state: ServerState, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    state.settings.auth = False
    state.backend.embed = broken  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="tuneloom.serve.access"), TestClient(app_for(state)) as client:
        failed = client.post("/v1/embeddings", json={"model": "vec", "input": "a"})
        assert failed.status_code == 500
        assert failed.json()["error"] == {
            "message": "internal server error (see the server log)",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
        assert client.get("/ready").status_code == 200  # one failed request does not break the server
        metrics = client.get("/metrics").text
    assert 'tuneloom_requests_total{endpoint="/v1/embeddings",status="500"} 1.0' in metrics
    lines = [r for r in caplog.records if r.name == "tuneloom.serve.access"]
    assert any("POST /v1/embeddings 500" in r.getMessage() and r.levelno == logging.ERROR for r in lines)
    assert any("RuntimeError: boom" in (r.exc_text or "") for r in lines)  # the traceback, in the log only
    assert "boom" not in failed.text


def test_ready_fails_when_a_dependency_did_not_load(state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    def no_registry() -> None:
        raise ImportError("cannot import name 'MlflowClient'")

    monkeypatch.setattr("tuneloom.serve.state.dependencies", lambda _: {"registry": no_registry})
    with TestClient(app_for(state)) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert ready.json()["failed"] == {"registry": "ImportError: cannot import name 'MlflowClient'"}


def test_oversized_chunked_body_is_413_in_openai_format(state: ServerState) -> None:  # noqa: F811
    from tests.serve.test_serve import LiveServer

    state.settings.auth = False
    server = LiveServer(app_for(state))
    try:

        def chunks(size: int):  # no Content-Length: sent chunked
            for _ in range(size // 500):
                yield b"x" * 500

        big = httpx.post(server.url + "/v1/embeddings", content=chunks(5000), headers=JSON, timeout=30)
        assert big.status_code == 413, big.text
        assert big.json()["error"]["code"] == "body_too_large" and big.json()["error"]["type"] == "invalid_request_error"
        body = b'{"model": "vec", "input": ["a", "b"]}'
        small = httpx.post(server.url + "/v1/embeddings", content=iter([body[:10], body[10:]]), headers=JSON, timeout=30)
        assert small.status_code == 200, small.text
        metrics = httpx.get(server.url + "/metrics").text
        assert 'tuneloom_requests_total{endpoint="/v1/embeddings",status="413"} 1.0' in metrics
        assert 'tuneloom_rejected_total{reason="body_too_large"} 1.0' in metrics
    finally:
        server.stop()


def test_feedback_database_and_its_wal_are_private(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "serve").mkdir(parents=True)
    (ws / "serve" / "feedback.db-wal").write_bytes(b"")  # left over from an older version, 0644
    (ws / "serve" / "feedback.db-wal").chmod(0o644)
    store = FeedbackStore.for_workspace(ws, None)
    store.record_completion(
        id="c1", endpoint="chat.completion", model="m", served="m", key_id=None, request=None, response=None,
        finish_reason="stop", prompt_tokens=1, completion_tokens=1, latency_ms=1,
    )  # fmt: skip
    files = sorted(p.name for p in (ws / "serve").iterdir())
    assert files == ["feedback.db", "feedback.db-shm", "feedback.db-wal"]
    for name in files:
        assert stat.S_IMODE((ws / "serve" / name).stat().st_mode) == 0o600, name
    store.close()
    fresh = tmp_path / "fresh"
    FeedbackStore.for_workspace(fresh, None).close()
    assert stat.S_IMODE((fresh / "serve").stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "serve" / "feedback.db").stat().st_mode) == 0o600


def test_admission_refuses_what_would_time_out(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloom.serve.engine import BatchEngine

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    engine = BatchEngine(model, AutoTokenizer.from_pretrained(tiny_llama_dir), max_batch_size=2, max_queue=50)
    try:
        engine._service_s = 4.0  # recent sequences took 4 s each in the batch
        engine._running = [object(), object()]  # type: ignore[list-item]  # the batch is full
        soon = time.monotonic() + 10

        def seq() -> Sequence:
            return Sequence(0, [1, 2], None, SamplingParams(max_tokens=4), lambda _: None, soon)

        with engine._cond:  # hold the engine thread off the fake batch
            engine._waiting.extend([seq(), seq()])  # a batch's worth waits: 4 s, then 4 s to answer
            assert engine._predicted_wait(1) == 8.0  # the third waiter starts after two batches
            with pytest.raises(Overloaded) as refused:
                engine.submit([seq()])  # 8 s wait + 4 s to answer > 10 s left
            assert refused.value.retry_after == 4
            assert "exceeds the request timeout" in str(refused.value)
            engine._waiting.pop()
            engine.submit([seq()])  # 4 s wait + 4 s: in time, queued
            assert len(engine._waiting) == 2
            engine._waiting.clear()
            engine._running = []
    finally:
        engine.close()
