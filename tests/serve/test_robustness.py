"""`tuneloom serve` as a real process under attack (issue 17): a burst of concurrent first requests of
every kind on a cold server, a soak at twice the queue limit, schemathesis against the OpenAPI schema,
and kill -9 during streaming and feedback writes, then a restart that has lost nothing it answered.

One server subprocess (tiny random Llama + LoRA adapter, tiny BERT encoder and classifier, a registry
with `qa` and the classifier) serves the module; the burst runs first, while it is cold.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml
from bench.serve_soak import figures, free_port, soak, start_server, wait_ready

from tests.conftest import CLS_TASK, write_project
from tests.serve.test_serve import make_adapter, make_classifier, make_classifier_run, make_run

SETTINGS = {"max_batch_size": 4, "max_queue": 4, "request_timeout_s": 10.0, "torch_threads": 1}
CHAT = [{"role": "user", "content": "How do I reset the Smart Plug?"}]
SEED = "chatcmpl-seed"  # a stored answer, so feedback is among the very first requests


class Server:
    """`tuneloom serve` in a subprocess; `kill()` is SIGKILL, `start()` (re)starts it on a new port."""

    def __init__(self, project_file: Path, key: str, ws: Path) -> None:
        self.project_file, self.key, self.ws = project_file, key, ws
        self.log = project_file.parent / "server.log"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.start()

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = start_server(self.project_file, port, self.log)
        wait_ready(self.url, self.process)

    def post(self, path: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=self.headers, timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.registry import ModelRegistry
    from tuneloom.serve.auth import KeyStore, keys_path
    from tuneloom.serve.feedback import FeedbackStore

    root = tmp_path_factory.mktemp("robust")
    project_file = write_project(root, tiny_llama_dir, tiny_bert_dir)
    adapter = make_adapter(tiny_llama_dir, root / "adapters" / "one", 1)
    make_classifier(tiny_bert_dir, root / "classifier")
    config = yaml.safe_load(project_file.read_text())
    config["serve"] = {
        **SETTINGS,
        "models": [
            {"name": "ad-one", "path": "adapters/one", "base": str(tiny_llama_dir)},
            {"name": "tiny-embed", "path": str(tiny_bert_dir)},
        ],
        "limits": {"max_tokens": 64, "max_prompt_tokens": 200, "max_n": 2},
    }
    project_file.write_text(yaml.safe_dump(config, sort_keys=False))
    ws = root / "workspace"
    registry = ModelRegistry(ws)
    registry.register_run(make_run(ws, project_file, "20260101-100000", adapter), "qa")
    registry.promote("qa", 1)
    registry.register_run(make_classifier_run(ws, project_file, tiny_bert_dir), CLS_TASK)
    registry.promote(CLS_TASK, 1)
    _, key = KeyStore(keys_path(ws)).create(["*"], "tests")
    store = FeedbackStore.for_workspace(ws, None)
    store.record_completion(
        id=SEED, endpoint="chat.completion", model="qa", served="qa:1", key_id=None, request=None, response=None,
        finish_reason="stop", prompt_tokens=1, completion_tokens=1, latency_ms=1,
    )  # fmt: skip
    store.close()
    server = Server(project_file, key, ws)
    yield server
    server.stop()


def first_requests(server: Server) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        "chat": ("/v1/chat/completions", {"model": "qa", "messages": CHAT, "max_tokens": 4}),
        "completions": ("/v1/completions", {"model": "ad-one", "prompt": "Reset the plug by", "max_tokens": 4}),
        "classify": ("/v1/classify", {"model": CLS_TASK, "input": "I was charged twice"}),
        "embeddings": ("/v1/embeddings", {"model": "tiny-embed", "input": ["a plug", "a hub"]}),
        "feedback": ("/v1/feedback", {"completion_id": SEED, "rating": "up"}),
    }


def test_burst_of_first_requests_of_every_kind_on_a_cold_server(server: Server) -> None:
    kinds = first_requests(server)
    jobs = [kind for _ in range(30) for kind in kinds]  # 30 of each kind, interleaved, all at once

    def send(kind: str) -> tuple[str, int]:
        try:
            return kind, server.post(*kinds[kind], timeout=120).status_code
        except httpx.HTTPError:
            return kind, -1  # no answer at all

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(send, jobs))
    by_kind = {kind: dict(Counter(status for k, status in results if k == kind)) for kind in kinds}
    print(f"\nburst (30 concurrent first requests of each kind, status: count): {json.dumps(by_kind)}")
    assert all(0 < status < 500 for _, status in results), by_kind
    assert all(status in (200, 429) for _, status in results), by_kind
    for kind, (path, body) in kinds.items():  # and the server still answers every kind
        assert server.post(path, body).status_code == 200, kind
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200 and "failed" not in ready.json()
    metrics = httpx.get(server.url + "/metrics").text
    assert 'status="5' not in metrics
    assert 'tuneloom_requests_total{endpoint="/v1/classify",status="200"}' in metrics


def test_soak_at_twice_the_queue_limit(server: Server) -> None:
    admitted = int(SETTINGS["max_batch_size"] + SETTINGS["max_queue"])
    records = soak(server.url, "ad-one", key=server.key, clients=2 * admitted, duration_s=20, max_requests=600, max_tokens=4)
    result = figures(records, SETTINGS["request_timeout_s"], 2 * admitted, admitted)
    print(f"\nsoak: {json.dumps(result)}")
    assert result["5xx"] == 0 and result["other"] == 0, result
    assert result["429"] > 0 and result["429_without_retry_after"] == 0, result
    assert result["2xx"] > 0 and result["p95_s"] < SETTINGS["request_timeout_s"], result


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    from tuneloom.config import load_project
    from tuneloom.serve import create_app

    schema = schemathesis.openapi.from_dict(create_app(load_project(server.project_file)).openapi())
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, headers=server.headers, timeout=60)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        check()
    print(f"\nschemathesis: {dict(statuses)}")
    assert sum(statuses.values()) > 20


def test_kill_9_during_streaming_and_feedback_then_restart_loses_nothing_answered(server: Server) -> None:
    answered: list[str] = []
    for _ in range(3):
        r = server.post("/v1/chat/completions", {"model": "ad-one", "messages": CHAT, "max_tokens": 4})
        assert r.status_code == 200
        answered.append(r.json()["id"])
    with httpx.stream(
        "POST",
        server.url + "/v1/chat/completions",
        json={"model": "qa", "messages": CHAT, "max_tokens": 4, "stream": True},
        headers=server.headers,
        timeout=60,
    ) as done:
        chunks = [line for line in done.iter_lines() if line.startswith("data: ")]
    assert chunks[-1] == "data: [DONE]"
    answered.append(json.loads(chunks[0][6:])["id"])  # a finished stream is an answer too

    rated: list[int] = []
    stop = threading.Event()

    def rate() -> None:  # feedback writes, right up to the kill
        while not stop.is_set():
            try:
                r = server.post("/v1/feedback", {"completion_id": answered[len(rated) % 4], "rating": 4}, timeout=10)
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                rated.append(r.json()["id"])

    writers = [threading.Thread(target=rate) for _ in range(4)]
    for w in writers:
        w.start()
    body = {"model": "ad-one", "messages": CHAT, "max_tokens": 64, "temperature": 1.0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=server.headers, timeout=60) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")  # the stream has begun
        while len(rated) < 5:
            time.sleep(0.01)
        server.kill()  # mid-stream, mid-feedback
        with pytest.raises(httpx.HTTPError):
            for _ in lines:
                pass
    stop.set()
    for w in writers:
        w.join(30)

    db = server.ws / "serve" / "feedback.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    server.start()
    with sqlite3.connect(db) as con:
        assert con.execute("pragma integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in con.execute("select id from tuneloom_completions")}
        feedback = {row[0] for row in con.execute("select id from tuneloom_feedback")}
    assert set(answered) <= stored
    assert set(rated) <= feedback, f"{len(set(rated) - feedback)} of {len(rated)} answered feedback rows lost"
    assert server.post("/v1/feedback", {"completion_id": answered[0], "rating": "down"}).status_code == 200
    print(f"\nkill -9: {len(answered)} answers and {len(rated)} feedback rows answered before the kill, all stored")
