"""LLM-as-judge against a real HTTP server on the loopback interface (stdlib http.server in a thread).

The server answers like an OpenAI-compatible endpoint; what it answers depends on the question, so
one batch exercises every path. It serves a bounded number of requests, and only on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from tuneloom.evaluate.judge import (
    JudgeConfig,
    JudgeScore,
    judge_answers,
    judge_from_config,
    judge_summary,
    parse_judge_reply,
)

KEY_ENV = "TUNELOOM_TEST_JUDGE_KEY"
SECRET = "sk-test-0123456789abcdef-SECRET"
MAX_REQUESTS = 60  # the server refuses (500) anything past this, so a retry loop cannot run away

# question -> what the model "says" (None: handled specially below)
REPLIES = {
    "json": '{"score": 5, "reason": "Matches the reference."}',
    "fenced": 'Here is my grade:\n```json\n{"score": 2, "reason": "Mostly wrong."}\n```',
    "bare": "4",
    "prose-json": 'Sure. {"score": 3, "reason": "Partly right."} Hope that helps.',
    "malformed": "I think this answer is quite good overall.",
    "out-of-range": '{"score": 7, "reason": "Excellent."}',
}


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.flaky_seen: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with server.lock:
                    server.requests.append(
                        {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                    )
                    count = len(server.requests)
                if count > MAX_REQUESTS or self.path != "/v1/chat/completions":
                    return self._send(500 if count > MAX_REQUESTS else 404, {"error": "no"})
                user = body["messages"][-1]["content"]
                question = user.split("Question:\n", 1)[1].split("\n", 1)[0]
                if question.startswith("flaky"):  # 429 the first time (or 503 for flaky-5xx), then fine
                    with server.lock:
                        seen = server.flaky_seen.get(question, 0)
                        server.flaky_seen[question] = seen + 1
                    if seen == 0:
                        status = 503 if question == "flaky-5xx" else 429
                        return self._send(status, {"error": "slow down"}, {"Retry-After": "0"})
                    content = '{"score": 4, "reason": "Fine after a retry."}'
                elif question == "always-429":
                    return self._send(429, {"error": "rate limited"})
                elif question == "echo-key":  # a misbehaving server that puts the key in its error
                    return self._send(401, {"error": f"bad key {self.headers.get('Authorization')}"})
                elif question == "not-chat":
                    return self._send(200, {"unexpected": True})
                else:
                    content = REPLIES[question]
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _items(*questions: str) -> list[dict[str, str]]:
    return [{"question": q, "reference": f"reference for {q}", "answer": f"answer for {q}"} for q in questions]


def _judge(server: _Server, questions: list[str], **kwargs: Any) -> list[JudgeScore]:
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("backoff_s", 0.01)
    return judge_answers(_items(*questions), server.url, "judge-model", "5 is perfect, 1 is wrong.", **kwargs)


@pytest.fixture
def caplog_debug(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx2 and httpcore2 included
    return caplog


def test_scores_are_parsed_in_every_accepted_form(server, monkeypatch, caplog_debug):
    monkeypatch.setenv(KEY_ENV, SECRET)
    scores = _judge(server, ["json", "fenced", "bare", "prose-json"], api_key_env=KEY_ENV)
    assert [s.score for s in scores] == [5, 2, 4, 3]  # in the order of the items
    assert [s.reason for s in scores] == ["Matches the reference.", "Mostly wrong.", "", "Partly right."]
    assert all(s.error is None for s in scores)
    assert len(server.requests) == 4
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    body = req["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "5 is perfect, 1 is wrong." in body["messages"][0]["content"]  # the rubric
    assert '"score"' in body["messages"][0]["content"]  # the JSON reply format is asked for
    user = {r["body"]["messages"][1]["content"] for r in server.requests}
    assert "Question:\njson\n\nReference answer:\nreference for json\n\nAnswer to grade:\nanswer for json" in user
    assert SECRET not in caplog_debug.text


def test_authorization_header_carries_the_key_from_the_env_var(server, monkeypatch, caplog_debug):
    monkeypatch.setenv(KEY_ENV, SECRET)
    _judge(server, ["json", "bare"], api_key_env=KEY_ENV)
    assert {r["headers"].get("authorization") for r in server.requests} == {f"Bearer {SECRET}"}
    assert SECRET not in caplog_debug.text


def test_no_authorization_header_without_a_key_env(server):
    _judge(server, ["json"])
    assert "authorization" not in server.requests[0]["headers"]


def test_malformed_replies_become_error_entries(server, monkeypatch, caplog_debug):
    monkeypatch.setenv(KEY_ENV, SECRET)
    scores = _judge(server, ["malformed", "json", "out-of-range", "not-chat"], api_key_env=KEY_ENV)
    bad, good, too_high, not_chat = scores
    assert bad.score is None and "no score from 1 to 5" in bad.error
    assert "quite good" in bad.error  # the reply is quoted, to see what went wrong
    assert good.score == 5 and good.error is None
    assert too_high.score is None and "7" in too_high.error
    assert not_chat.score is None and "not a chat-completions response" in not_chat.error
    assert len(server.requests) == 4  # unreadable replies are not retried
    assert "judge item 0 failed" in caplog_debug.text
    assert judge_summary(scores) == {"mean": 5.0, "n_scored": 1, "n_failed": 3}
    assert SECRET not in caplog_debug.text


def test_429_then_200_is_retried(server, monkeypatch, caplog_debug):
    monkeypatch.setenv(KEY_ENV, SECRET)
    scores = _judge(server, ["flaky", "flaky-5xx", "json"], api_key_env=KEY_ENV)
    assert [s.score for s in scores] == [4, 4, 5]
    assert all(s.error is None for s in scores)
    assert server.flaky_seen == {"flaky": 2, "flaky-5xx": 2}  # one refusal each, then success
    assert len(server.requests) == 5
    assert "HTTP 429" in caplog_debug.text and "retrying" in caplog_debug.text
    assert SECRET not in caplog_debug.text


def test_retries_are_bounded(server):
    scores = _judge(server, ["always-429"], max_retries=2)
    assert scores[0].score is None
    assert "HTTP 429" in scores[0].error and "after 3 attempts" in scores[0].error
    assert len(server.requests) == 3  # the first try and 2 retries


def test_the_key_never_reaches_errors_or_logs(server, monkeypatch, caplog_debug):
    monkeypatch.setenv(KEY_ENV, SECRET)
    scores = _judge(server, ["echo-key", "json"], api_key_env=KEY_ENV)
    assert scores[0].score is None and "HTTP 401" in scores[0].error
    assert SECRET not in scores[0].error and "***" in scores[0].error  # the server echoed it; we redact it
    assert scores[1].score == 5
    assert len(server.requests) == 2  # a 401 is not retried
    assert "judge item 0 failed" in caplog_debug.text
    assert SECRET not in caplog_debug.text
    assert all(SECRET not in s.model_dump_json() for s in scores)


def test_missing_key_env_fails_every_item_without_a_request(server, monkeypatch, caplog_debug):
    monkeypatch.delenv(KEY_ENV, raising=False)
    scores = _judge(server, ["json", "bare"], api_key_env=KEY_ENV)
    assert [s.score for s in scores] == [None, None]
    assert all(KEY_ENV in s.error for s in scores)
    assert server.requests == []
    assert judge_summary(scores) == {"mean": None, "n_scored": 0, "n_failed": 2}


def test_unreachable_endpoint_becomes_errors():
    # a port that was free a moment ago: connection refused, retried, then an error entry
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    scores = judge_answers(_items("json"), f"http://127.0.0.1:{port}/v1", "m", "r", timeout=2, max_retries=1, backoff_s=0.01)
    assert scores[0].score is None and "after 2 attempts" in scores[0].error


def test_judge_from_config_uses_max_examples(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    config = JudgeConfig(url=server.url + "/", model="judge-model", rubric="r", api_key_env=KEY_ENV, timeout_s=5, max_examples=2)
    scores = judge_from_config(_items("json", "bare", "fenced"), config, backoff_s=0.01)
    assert [s.score for s in scores] == [5, 4]
    assert len(server.requests) == 2
    assert server.requests[0]["path"] == "/v1/chat/completions"  # a trailing slash on the url is fine


def test_judge_config_validation():
    c = JudgeConfig(url="http://127.0.0.1:8000/v1", model="m")
    assert c.api_key_env is None and c.timeout_s == 30 and c.max_examples is None and c.rubric
    for bad in (
        {"url": "127.0.0.1:8000", "model": "m"},  # no scheme
        {"url": "http://x/v1", "model": "m", "api_key_env": "sk-abc 123"},  # a key pasted in place of a variable name
        {"url": "http://x/v1", "model": "m", "timeout_s": 0},
        {"url": "http://x/v1", "model": "m", "max_examples": 0},
        {"url": "http://x/v1", "model": "m", "api_key": "sk-abc"},  # unknown key
    ):
        with pytest.raises(ValidationError):
            JudgeConfig(**bad)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": 5, "reason": "good"}', (5, "good")),
        ('{"score": "4", "reason": null}', (4, "")),
        ('{"score": 3.0}', (3, "")),
        ('```\n{"score": 1, "reason": "wrong"}\n```', (1, "wrong")),
        ("5", (5, "")),
        (" 4/5 ", (4, "")),
        ("Score: 2", (2, "")),
    ],
)
def test_parse_judge_reply_accepts(text, expected):
    assert parse_judge_reply(text) == expected


@pytest.mark.parametrize("text", ["", None, "great", "4.5", "0", "6", '{"score": 4.5}', '{"reason": "no score"}', "3 or 4"])
def test_parse_judge_reply_rejects(text):
    with pytest.raises(ValueError):
        parse_judge_reply(text)


def test_judge_summary():
    scores = [JudgeScore(score=5), JudgeScore(score=2), JudgeScore(error="timeout")]
    assert judge_summary(scores) == {"mean": 3.5, "n_scored": 2, "n_failed": 1}
    assert judge_summary([]) == {"mean": None, "n_scored": 0, "n_failed": 0}
