"""POST /v1/feedback faults: unknown answer, oversized correction, rating out of range, the same feedback twice,
a locked database; and corrections stored as redacted as the answers."""

from __future__ import annotations

import sqlalchemy.exc
from fastapi.testclient import TestClient

from tests.serve.test_dependencies import state  # noqa: F401  # the fake-backend server state fixture
from tuneloom.data.redact import Redactor
from tuneloom.serve.app import app_for
from tuneloom.serve.state import ServerState


def stored_answer(state: ServerState) -> str:  # noqa: F811
    state.feedback.record_completion(
        id="chatcmpl-1",
        endpoint="chat.completion",
        model="talk",
        served="talk:1",
        key_id=None,
        request={"messages": [{"role": "user", "content": "hi"}]},
        response={"choices": ["hello"]},
        finish_reason="stop",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=5,
    )
    return "chatcmpl-1"


def test_feedback_faults_get_clear_4xx_and_a_retry_is_stored_once(state: ServerState) -> None:  # noqa: F811
    state.settings.auth = False
    cid = stored_answer(state)
    with TestClient(app_for(state)) as client:
        unknown = client.post("/v1/feedback", json={"completion_id": "chatcmpl-nope", "rating": "up"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "completion_not_found"
        huge = client.post("/v1/feedback", json={"completion_id": cid, "rating": "down", "correction": "x" * 5_000_000})
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
        for rating in (0, 6, "meh"):
            bad = client.post("/v1/feedback", json={"completion_id": cid, "rating": rating})
            assert bad.status_code == 400 and "rating" in bad.json()["error"]["message"]
        body = {"completion_id": cid, "rating": "down", "correction": "hi there", "tags": ["wrong"]}
        first, again = client.post("/v1/feedback", json=body), client.post("/v1/feedback", json=body)
        assert first.status_code == again.status_code == 200
        assert first.json()["id"] == again.json()["id"] and (first.json()["duplicate"], again.json()["duplicate"]) == (
            False,
            True,
        )
        other = client.post("/v1/feedback", json={**body, "tags": ["wrong", "urgent"]})
        assert other.json()["id"] != first.json()["id"]  # different feedback on the same answer is kept
    assert len(state.feedback.feedback_for(cid)) == 2


def test_long_correction_under_the_body_limit_is_refused_by_length(state: ServerState) -> None:  # noqa: F811
    state.settings.auth = False
    state.settings.limits.max_body_bytes = 10_000_000
    cid = stored_answer(state)
    with TestClient(app_for(state)) as client:
        long = client.post("/v1/feedback", json={"completion_id": cid, "rating": "down", "correction": "x" * 5_000_000})
    assert long.status_code == 400 and "correction" in long.json()["error"]["message"]
    assert state.feedback.feedback_for(cid) == []


def test_locked_database_is_a_503_with_retry_after(state: ServerState, monkeypatch) -> None:  # noqa: F811
    state.settings.auth = False

    def locked(*_: object) -> None:
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(state.feedback, "completion", locked)
    with TestClient(app_for(state)) as client:
        busy = client.post("/v1/feedback", json={"completion_id": "chatcmpl-1", "rating": "up"})
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert busy.json()["error"]["code"] == "feedback_unavailable"


def test_correction_is_stored_redacted_like_the_answer(state: ServerState) -> None:  # noqa: F811
    state.settings.auth = False
    state.redactor = Redactor(["email"])
    cid = stored_answer(state)
    with TestClient(app_for(state)) as client:
        ok = client.post("/v1/feedback", json={"completion_id": cid, "rating": "down", "correction": "Write to ana@example.com"})
    assert ok.status_code == 200
    assert [f.correction for f in state.feedback.feedback_for(cid)] == ["Write to <EMAIL_1>"]
