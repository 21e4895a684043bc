"""The `vllm` serve backend: command and environment building, error paths, and the managed process behind
Tuneloom's gateway (the official openai client, streaming, adapters per request loaded at run time, hot
promotion, feedback, metrics, overload, a killed process restarted, stopped with the server).

The gateway tests run against `vllm_stub.py`, a standard-library stand-in for vLLM's OpenAI server started through the
same launcher, so they run everywhere. `test_real_vllm_*` start the real vLLM server on the packaged SmolLM2; they
run only where vLLM's own environment exists (`make vllm-env`, or TUNELOOM_VLLM_PYTHON naming its python); CI
does not build it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import write_project
from tests.serve.test_serve import CHAT, LiveServer, make_adapter, make_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
REAL_VLLM = Path(os.environ.get("TUNELOOM_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))


def fake_vllm_python(root: Path) -> Path:
    """An executable that runs this Python with `vllm_stub` importable as vllm.entrypoints.openai.api_server."""
    package = root / "fake-vllm" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    shutil.copy(Path(__file__).with_name("vllm_stub.py"), package / "api_server.py")
    python = root / "fake-vllm" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={root / "fake-vllm"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def serve_project(
    root: Path, tiny_llama_dir: Path, tiny_bert_dir: Path, python: Path, chat_model: str | None = None, **serve: object
) -> Path:
    project_file = write_project(root, chat_model or tiny_llama_dir, tiny_bert_dir)
    make_adapter(tiny_llama_dir, root / "adapters" / "one", 1)
    make_adapter(tiny_llama_dir, root / "adapters" / "two", 2)
    config = yaml.safe_load(project_file.read_text())
    config["serve"] = {
        "backend": "vllm",
        "vllm_python": str(python),
        "torch_threads": 1,
        "models": [
            {"name": "ad-one", "path": "adapters/one", "base": str(tiny_llama_dir)},
            {"name": "ad-two", "path": "adapters/two", "base": str(tiny_llama_dir)},
        ],
        "max_batch_size": 2,
        "max_queue": 2,
        "alias_ttl_s": 0.2,
        "limits": {"max_tokens": 64, "max_prompt_tokens": 200},
        **serve,
    }
    project_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return project_file


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.cli import app as cli
    from tuneloom.config import load_project
    from tuneloom.registry import ModelRegistry
    from tuneloom.serve import create_app

    root = tmp_path_factory.mktemp("serve-vllm")
    project_file = serve_project(root, tiny_llama_dir, tiny_bert_dir, fake_vllm_python(root))
    ws = root / "workspace"
    registry = ModelRegistry(ws)
    for stamp, adapter in (("20260101-100000", root / "adapters" / "one"), ("20260102-100000", root / "adapters" / "two")):
        registry.register_run(make_run(ws, project_file, stamp, adapter), "qa")
    registry.promote("qa", 1)
    result = runner.invoke(cli, ["keys", "create", "-m", "*", "--name", "tests", "-c", str(project_file)])
    key = result.output.strip().splitlines()[-1]
    server = LiveServer(create_app(load_project(project_file)))
    yield {"server": server, "key": key, "registry": registry, "ws": ws}
    servers = list(server.state.backend._servers.values())
    server.stop()
    assert servers and all(not s.alive() for s in servers)  # stopped with the server


def client(env) -> openai.OpenAI:
    return openai.OpenAI(base_url=env["server"].url + "/v1", api_key=env["key"], max_retries=0, timeout=120)


def ask(env, model: str, **kwargs) -> str:
    answer = client(env).chat.completions.create(model=model, messages=CHAT, max_tokens=6, temperature=0, **kwargs)
    return answer.choices[0].message.content or ""


def the_server(env):
    servers = env["server"].state.backend._servers
    assert len(servers) == 1  # one process for the base, whatever the adapters
    return next(iter(servers.values()))


def test_chat_streaming_and_adapters_per_request(env):
    c = client(env)
    one = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=6, temperature=0)
    assert one.choices[0].finish_reason == "length" and one.usage.completion_tokens == 6
    two = ask(env, "ad-two")
    assert two != one.choices[0].message.content and ask(env, "ad-one") == one.choices[0].message.content
    assert len(the_server(env).loras) == 2  # both loaded into the one process at run time
    chunks = list(c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=6, temperature=0, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == one.choices[0].message.content
    text = c.completions.create(model="ad-two", prompt="The warranty is", max_tokens=3, temperature=0, n=2)
    assert [ch.text for ch in text.choices] == [text.choices[0].text] * 2 and text.usage.completion_tokens == 6


def test_hot_promotion_feedback_and_metrics(env):
    registry = env["registry"]
    pid = the_server(env).proc.pid
    expected = {v: ask(env, f"qa:{v}") for v in (1, 2)}
    assert expected[1] != expected[2] and ask(env, "qa") == expected[1]
    registry.promote("qa", 2)
    time.sleep(0.3)  # > alias_ttl_s
    answer = client(env).chat.completions.create(model="qa", messages=CHAT, max_tokens=6, temperature=0)
    assert answer.system_fingerprint == "qa:2" and answer.choices[0].message.content == expected[2]
    assert the_server(env).proc.pid == pid  # a new adapter needs no restart
    registry.rollback("qa")
    headers = {"Authorization": f"Bearer {env['key']}"}
    fb = httpx.post(env["server"].url + "/v1/feedback", json={"completion_id": answer.id, "rating": "up"}, headers=headers)
    assert fb.status_code == 200
    with sqlite3.connect(env["ws"] / "serve" / "feedback.db") as con:
        assert con.execute("select served from tuneloom_completions where id = ?", (answer.id,)).fetchone() == ("qa:2",)
    assert "tuneloom_generated_tokens_total" in httpx.get(env["server"].url + "/metrics", headers=headers).text


def test_overload_answers_429(env):
    body = {"model": "ad-one", "messages": CHAT, "max_tokens": 8, "temperature": 0, "n": 4}
    backend, server = env["server"].state.backend, the_server(env)
    os.kill(server.proc.pid, signal.SIGSTOP)  # the engine holds the first request
    try:
        first = threading.Thread(target=lambda: client(env).chat.completions.create(**body))
        first.start()
        deadline = time.monotonic() + 20
        while backend.load()[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.load() == (4, 0)
        with pytest.raises(openai.RateLimitError):  # 4 in flight + 2 > max_batch_size + max_queue
            client(env).chat.completions.create(**{**body, "n": 2})
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    first.join(60)
    assert backend.load() == (0, 0)


def test_a_killed_engine_is_restarted_with_its_adapters(env):
    before = ask(env, "ad-two")
    server = the_server(env)
    os.kill(server.proc.pid, signal.SIGKILL)
    assert ask(env, "ad-two") == before  # the request waits for the restart
    fresh = the_server(env)
    assert fresh is not server and fresh.alive() and fresh.loras == server.loras
    assert "--lora-modules" in fresh.command()  # the restart is started with every adapter


def test_a_request_sent_to_a_dying_engine_is_sent_again_to_its_restart(env, monkeypatch):
    from tuneloom.serve.vllm import VllmServer

    before = ask(env, "ad-one")
    server = the_server(env)
    monkeypatch.setattr(VllmServer, "alive", lambda self: True)  # the process looks alive while it dies
    os.kill(server.proc.pid, signal.SIGKILL)
    assert_eventually(lambda: not _answers(server.url))
    answers: list[str] = []
    asking = threading.Thread(target=lambda: answers.append(ask(env, "ad-one")))
    asking.start()  # reaches the dead port, then waits for the restart
    time.sleep(0.5)
    monkeypatch.undo()  # the monitor sees the death and restarts the engine
    asking.join(60)
    assert answers == [before] and the_server(env) is not server


def test_command_and_environment(tiny_llama_dir, tmp_path, monkeypatch):
    from tuneloom.config import ServeConfig
    from tuneloom.serve.vllm import LAUNCHER, VllmServer

    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    settings = ServeConfig(torch_threads=2, vllm_kv_cache_gb=3, vllm_args=["--enforce-eager"], max_batch_size=4, precision="fp32")
    server = VllmServer("/venv/bin/python", tiny_llama_dir, settings, tmp_path, loras={"a1": tmp_path / "one"})
    command = server.command()
    assert command[:2] == ["/venv/bin/python", str(LAUNCHER)] and command[-1] == "--enforce-eager"
    flags = dict(zip(command[2:], command[3:]))
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == str(server.port) and flags["--dtype"] == "float32"
    assert flags["--max-num-seqs"] == "4" and flags["--max-lora-rank"] == "16" and flags["--generation-config"] == "vllm"
    assert flags["--lora-modules"] == f"a1={tmp_path / 'one'}" and "--enable-lora" in command
    assert int(flags["--max-model-len"]) <= 2048 + 512  # capped at the tiny model's own context
    env = server.environment()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3" and env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind" and env["OMP_NUM_THREADS"] == "2"
    assert env["HF_HUB_OFFLINE"] == env["VLLM_NO_USAGE_STATS"] == env["DO_NOT_TRACK"] == "1"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["OMP_WAIT_POLICY"] == "passive"
    assert "PYTHONPATH" not in env
    assert "VLLM_CPU_OMP_THREADS_BIND" not in VllmServer("p", tiny_llama_dir, ServeConfig(), tmp_path).environment()


def test_interpreter_and_selection_errors(tmp_path, monkeypatch):
    from tuneloom.errors import TuneloomError
    from tuneloom.serve import vllm
    from tuneloom.serve.backends import select_backend

    python = fake_vllm_python(tmp_path)
    assert vllm.vllm_interpreter(str(python)) == str(python)
    with pytest.raises(TuneloomError, match=r"serve.vllm_python .*is not an executable file; build vLLM's own environment"):
        vllm.vllm_interpreter(str(tmp_path / "nowhere" / "python"))
    with pytest.raises(TuneloomError, match=r"cannot import vllm; build .*make vllm-env"):
        vllm.vllm_interpreter(sys.executable)  # Tuneloom's own environment has no vllm
    monkeypatch.setattr(vllm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TuneloomError, match="vllm is not importable here and serve.vllm_python is not set"):
        vllm.vllm_interpreter(None)
    assert select_backend("vllm", vllm_python=str(python)) == "vllm"
    assert select_backend("auto", vllm_python=str(python), gpu=True) == "vllm"
    assert select_backend("auto", vllm_python=str(python), gpu=False) == "transformers"
    assert select_backend("auto", vllm_python=None, gpu=True) == "transformers"
    with pytest.raises(TuneloomError, match="serve.backend is vllm but"):
        select_backend("vllm")


def test_a_failed_start_quotes_the_log_and_a_high_rank_is_refused(tiny_llama_dir, tmp_path):
    from tuneloom.config import ServeConfig
    from tuneloom.errors import TuneloomError
    from tuneloom.serve.vllm import VllmServer, _check_rank

    settings = ServeConfig(vllm_args=["--no-such-flag"])
    server = VllmServer(str(fake_vllm_python(tmp_path)), tiny_llama_dir, settings, tmp_path / "logs")
    with pytest.raises(TuneloomError, match=r"(?s)vLLM exited with code 2 .*unrecognized arguments: --no-such-flag"):
        server.start()
    assert not server.alive() and not server.ready.is_set()
    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", 1)  # rank 4
    _check_rank(adapter, 8)
    with pytest.raises(TuneloomError, match="LoRA rank 4 but serve.vllm_max_lora_rank is 1: raise it to 4"):
        _check_rank(adapter, 1)


def test_the_launcher_stops_vllm_when_tuneloom_dies(tiny_llama_dir, tmp_path):
    from tuneloom.config import ServeConfig
    from tuneloom.serve.vllm import VllmServer

    server = VllmServer(str(fake_vllm_python(tmp_path)), tiny_llama_dir, ServeConfig(), tmp_path)
    # A parent shell that starts the launcher and is then killed, as a Tuneloom server killed with SIGKILL.
    parent = subprocess.Popen(["sh", "-c", 'exec "$@" & echo $!; wait', "sh", *server.command()], stdout=subprocess.PIPE)
    child = int(parent.stdout.readline())
    assert_eventually(lambda: _answers(server.url))
    parent.kill()
    parent.wait()
    assert_eventually(lambda: not Path(f"/proc/{child}").exists() or "Z" in _state(child))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except FileNotFoundError:
        return "Z"


def assert_eventually(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def real_env(tmp_path_factory, smollm2_dir, tiny_bert_dir):
    """`tuneloom serve` on the real vLLM server (packaged SmolLM2, two random LoRA adapters), where it exists."""
    if not REAL_VLLM.is_file():
        pytest.skip(f"no vLLM environment at {REAL_VLLM} (make vllm-env, or set TUNELOOM_VLLM_PYTHON); CI does not build it")
    from tuneloom.cli import app as cli
    from tuneloom.config import load_project
    from tuneloom.serve import create_app

    root = tmp_path_factory.mktemp("serve-vllm-real")
    serve = {"vllm_args": ["--enforce-eager"], "vllm_kv_cache_gb": 1, "max_batch_size": 4}
    project_file = serve_project(root, smollm2_dir, tiny_bert_dir, REAL_VLLM, "smollm2-135m-instruct", **serve)
    result = runner.invoke(cli, ["keys", "create", "-m", "*", "--name", "tests", "-c", str(project_file)])
    server = LiveServer(create_app(load_project(project_file)))
    yield {"server": server, "key": result.output.strip().splitlines()[-1], "ws": root / "workspace"}
    servers = list(server.state.backend._servers.values())
    server.stop()
    assert servers and all(not s.alive() for s in servers)


@pytest.mark.slow
def test_real_vllm_answers_streams_switches_adapters_and_stores_feedback(real_env):
    c = client(real_env)
    one = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0)
    assert one.choices[0].finish_reason in ("length", "stop") and one.usage.completion_tokens > 0
    assert ask(real_env, "ad-two") != one.choices[0].message.content  # the other adapter answers
    base = c.chat.completions.create(model="smollm2-135m-instruct", messages=CHAT, max_tokens=12, temperature=0)
    assert base.choices[0].message.content not in (one.choices[0].message.content, "")
    chunks = list(c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == one.choices[0].message.content
    headers = {"Authorization": f"Bearer {real_env['key']}"}
    fb = httpx.post(real_env["server"].url + "/v1/feedback", json={"completion_id": one.id, "rating": "up"}, headers=headers)
    assert fb.status_code == 200
    with sqlite3.connect(real_env["ws"] / "serve" / "feedback.db") as con:
        assert con.execute("select served from tuneloom_completions where id = ?", (one.id,)).fetchone() == ("ad-one",)


@pytest.mark.slow
def test_real_vllm_killed_is_restarted(real_env):
    before = ask(real_env, "ad-two")
    server = the_server(real_env)
    os.kill(server.proc.pid, signal.SIGKILL)
    assert ask(real_env, "ad-two") == before  # waits for the restart, then answers as before
    assert the_server(real_env) is not server
