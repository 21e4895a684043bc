"""The `llamacpp` serve backend behind Tuneloom's gateway: the official openai client, streaming, adapters
per request (LoRA GGUFs on one base process), hot promotion, feedback, metrics, overload, and an engine
process killed and restarted.

One server (tiny random Llama, two LoRA adapters as `ad-one` / `ad-two`, registry `qa` versions 1 and 2)
serves the module; the GGUFs are exported on first use into the workspace.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import httpx2 as httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import write_project
from tests.serve.test_serve import CHAT, LiveServer, make_adapter, make_run

pytest.importorskip("xllamacpp")
runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.cli import app as cli
    from tuneloom.config import load_project
    from tuneloom.registry import ModelRegistry
    from tuneloom.serve import create_app

    root = tmp_path_factory.mktemp("serve-llamacpp")
    project_file = write_project(root, tiny_llama_dir, tiny_bert_dir)
    one = make_adapter(tiny_llama_dir, root / "adapters" / "one", 1)
    two = make_adapter(tiny_llama_dir, root / "adapters" / "two", 2)
    config = yaml.safe_load(project_file.read_text())
    config["serve"] = {
        "backend": "llamacpp",
        "llamacpp_quant": "f16",
        "torch_threads": 1,
        "models": [
            {"name": "ad-one", "path": "adapters/one", "base": str(tiny_llama_dir)},
            {"name": "ad-two", "path": "adapters/two", "base": str(tiny_llama_dir)},
        ],
        "max_batch_size": 2,
        "max_queue": 2,
        "alias_ttl_s": 0.2,
        "limits": {"max_tokens": 64, "max_prompt_tokens": 200},
    }
    project_file.write_text(yaml.safe_dump(config, sort_keys=False))
    ws = root / "workspace"
    registry = ModelRegistry(ws)
    for stamp, adapter in (("20260101-100000", one), ("20260102-100000", two)):
        registry.register_run(make_run(ws, project_file, stamp, adapter), "qa")
    registry.promote("qa", 1)
    result = runner.invoke(cli, ["keys", "create", "-m", "*", "--name", "tests", "-c", str(project_file)])
    key = result.output.strip().splitlines()[-1]
    server = LiveServer(create_app(load_project(project_file)))
    yield {"server": server, "key": key, "registry": registry, "ws": ws}
    server.stop()
    assert all(not w.alive() for w in server.state.backend._workers.values())  # stopped with the server


def client(env) -> openai.OpenAI:
    return openai.OpenAI(base_url=env["server"].url + "/v1", api_key=env["key"], max_retries=0, timeout=120)


def ask(env, model: str, **kwargs) -> str:
    answer = client(env).chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0, **kwargs)
    return answer.choices[0].message.content or ""


def test_chat_streaming_and_adapters_per_request(env):
    c = client(env)
    one = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0)
    assert one.choices[0].finish_reason in ("length", "stop") and one.usage.completion_tokens > 0
    two = ask(env, "ad-two")
    assert two != one.choices[0].message.content  # a different LoRA GGUF answers
    assert ask(env, "ad-one") == one.choices[0].message.content  # switching back: same answer
    workers = env["server"].state.backend._workers
    assert len(workers) == 1 and len(next(iter(workers.values())).loras) == 2  # one base process, two adapters
    chunks = list(c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == one.choices[0].message.content
    text = c.completions.create(model="ad-two", prompt="The warranty is", max_tokens=6, temperature=0)
    assert text.choices[0].text


def test_hot_promotion_feedback_and_metrics(env):
    registry = env["registry"]
    expected = {v: ask(env, f"qa:{v}") for v in (1, 2)}
    assert ask(env, "qa") == expected[1]
    registry.promote("qa", 2)
    time.sleep(0.3)  # > alias_ttl_s
    answer = client(env).chat.completions.create(model="qa", messages=CHAT, max_tokens=12, temperature=0)
    assert answer.system_fingerprint == "qa:2" and answer.choices[0].message.content == expected[2]
    registry.rollback("qa")
    headers = {"Authorization": f"Bearer {env['key']}"}
    fb = httpx.post(env["server"].url + "/v1/feedback", json={"completion_id": answer.id, "rating": "up"}, headers=headers)
    assert fb.status_code == 200
    with sqlite3.connect(env["ws"] / "serve" / "feedback.db") as con:
        assert con.execute("select served from tuneloom_completions where id = ?", (answer.id,)).fetchone() == ("qa:2",)
    metrics = httpx.get(env["server"].url + "/metrics", headers=headers).text
    assert "tuneloom_generated_tokens_total" in metrics


def test_overload_answers_429(env):
    body = {"model": "ad-one", "messages": CHAT, "max_tokens": 8, "temperature": 0, "n": 4}
    backend = env["server"].state.backend
    worker = next(iter(backend._workers.values()))
    os.kill(worker.proc.pid, signal.SIGSTOP)  # the engine holds the first request: the tiny model is too fast
    try:
        first = threading.Thread(target=lambda: client(env).chat.completions.create(**body))
        first.start()
        deadline = time.monotonic() + 20
        while backend.load()[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.load() == (4, 0)
        with pytest.raises(openai.RateLimitError):  # 4 in flight + 2 > max_batch_size + max_queue
            client(env).chat.completions.create(**{**body, "n": 3})
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    first.join(60)
    assert backend.load() == (0, 0)


def test_a_killed_engine_is_restarted(env):
    before = ask(env, "ad-two")
    backend = env["server"].state.backend
    worker = next(iter(backend._workers.values()))
    os.kill(worker.proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while next(iter(backend._workers.values())) is worker and time.monotonic() < deadline:
        time.sleep(0.1)
    fresh = next(iter(backend._workers.values()))
    assert fresh is not worker and fresh.alive() and fresh.loras == worker.loras
    assert ask(env, "ad-two") == before


def test_backend_selection_and_a_broken_gguf_fails_with_its_log(tmp_path):
    from tuneloom.errors import TuneloomError
    from tuneloom.serve.backends import select_backend
    from tuneloom.serve.llamacpp import Worker

    assert select_backend("llamacpp") == "llamacpp"
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF not really")
    worker = Worker(bogus, [], threads=1, parallel=1, ctx=256, log_dir=tmp_path / "logs")
    with pytest.raises(TuneloomError, match="llama.cpp did not start on broken.gguf"):
        worker.start(timeout_s=60)
    assert not worker.alive()
