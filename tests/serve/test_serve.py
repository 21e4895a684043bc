"""`tuneloom serve`: the OpenAI client against a live server on loopback, auth, limits, overload,
hot promotion, feedback (SQLite; PostgreSQL when TUNELOOM_TEST_POSTGRES_URL is set), the batching
engine's mixed-adapter batches, the adapter cache and backend selection.

One server (tiny random Llama with two LoRA adapters, a tiny BERT encoder and classifier, and a
registry with two versions of `qa`) serves the whole module.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK, write_project

runner = CliRunner()


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random non-zero A and B, so it changes the base model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
    )
    model.save_pretrained(out)
    return out


def make_run(ws: Path, project_file: Path, stamp: str, adapter: Path) -> Path:
    """A finished, gated run folder holding `adapter` as its model/, as train + eval + gate leave it."""
    from tuneloom.config import load_project

    project = load_project(project_file)
    task = project.config.task(CHAT_TASK)
    run = ws / "runs" / f"{CHAT_TASK}-{stamp}"
    shutil.copytree(adapter, run / "model")
    snapshot = {
        "project": project.config.project,
        "project_file": str(project.path),
        "task": task.model_dump(mode="json"),
        "dataset": {"path": str(ws / "datasets" / "x"), "version": "x"},
        "base_model_path": str(task.model),
        "precision": "fp32",
    }
    (run / "config.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    (run / "summary.json").write_text("{}")
    (run / "status.json").write_text(json.dumps({"state": "completed"}))
    (run / "gate.json").write_text(json.dumps({"passed": True, "reference": "base", "rules": []}))
    return run


def make_classifier(bert_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(3)
    labels = ["billing", "shipping", "tech_support"]
    model = BertForSequenceClassification.from_pretrained(
        bert_dir, num_labels=3, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(out)
    return out


def make_classifier_run(ws: Path, project_file: Path, bert_dir: Path) -> Path:
    """A finished classification run: a SEQ_CLS LoRA adapter (with its head) and its dataset's labels."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from tuneloom.config import load_project

    task = load_project(project_file).config.task(CLS_TASK)
    labels = ["billing", "shipping", "tech_support"]
    dataset = ws / "datasets" / CLS_TASK / "v1"
    dataset.mkdir(parents=True)
    result = {"task": CLS_TASK, "version": "v1", "path": str(dataset), "counts": {}, "labels": labels, "sources": []}
    (dataset / "manifest.json").write_text(json.dumps({"result": result, "task_type": "classification"}))
    torch.manual_seed(4)
    model = get_peft_model(
        BertForSequenceClassification.from_pretrained(bert_dir, num_labels=3),
        LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
    )
    run = ws / "runs" / f"{CLS_TASK}-20260103-100000"
    model.save_pretrained(run / "model")
    snapshot = {
        "project": "tiny-project",
        "project_file": "tuneloom.yaml",
        "task": task.model_dump(mode="json"),
        "dataset": {"path": str(dataset), "version": "v1"},
        "base_model_path": str(bert_dir),
        "precision": "fp32",
    }
    (run / "config.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    (run / "summary.json").write_text("{}")
    (run / "gate.json").write_text(json.dumps({"passed": True, "reference": "base", "rules": []}))
    return run


class LiveServer:
    """uvicorn on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "server did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def state(self):
        return self.app.state.tuneloom

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.cli import app as cli
    from tuneloom.config import load_project
    from tuneloom.registry import ModelRegistry
    from tuneloom.serve import create_app

    root = tmp_path_factory.mktemp("serve")
    project_file = write_project(root, tiny_llama_dir, tiny_bert_dir)
    adapters = root / "adapters"
    one, two = make_adapter(tiny_llama_dir, adapters / "one", 1), make_adapter(tiny_llama_dir, adapters / "two", 2)
    make_classifier(tiny_bert_dir, root / "classifier")
    config = yaml.safe_load(project_file.read_text())
    config["serve"] = {
        "models": [
            {"name": "ad-one", "path": "adapters/one", "base": str(tiny_llama_dir)},
            {"name": "ad-two", "path": "adapters/two", "base": str(tiny_llama_dir), "system_prompt": "Be brief."},
            {"name": "tiny-embed", "path": str(tiny_bert_dir)},
            {"name": "tiny-cls", "path": "classifier"},
        ],
        "max_batch_size": 4,
        "max_queue": 2,
        "alias_ttl_s": 0.2,
        "request_timeout_s": 60,
        "limits": {"max_tokens": 64, "max_prompt_tokens": 200, "max_body_bytes": 20000, "max_n": 4},
    }
    project_file.write_text(yaml.safe_dump(config, sort_keys=False))
    ws = root / "workspace"
    registry = ModelRegistry(ws)
    for stamp, adapter in (("20260101-100000", one), ("20260102-100000", two)):
        registry.register_run(make_run(ws, project_file, stamp, adapter), "qa")
    registry.promote("qa", 1)
    registry.register_run(make_classifier_run(ws, project_file, tiny_bert_dir), CLS_TASK)
    registry.promote(CLS_TASK, 1)

    result = runner.invoke(cli, ["keys", "create", "-m", "*", "--name", "tests", "-c", str(project_file)])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    server = LiveServer(create_app(load_project(project_file)))
    yield {"root": root, "project": project_file, "server": server, "key": key, "registry": registry, "ws": ws}
    server.stop()


def client(env, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=env["server"].url + "/v1", api_key=key or env["key"], max_retries=0, timeout=60)


def post(env, path: str, body: dict, key: str | None = "default", **kwargs) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {env['key'] if key == 'default' else key}"}
    return httpx.post(env["server"].url + path, json=body, headers=headers, timeout=60, **kwargs)


CHAT = [{"role": "user", "content": "How do I reset the Smart Plug?"}]


def test_openai_client_chat_stream_completions_models(env):
    c = client(env)
    ids = {m.id for m in c.models.list().data}
    assert {"qa", CLS_TASK, "ad-one", "ad-two", "tiny-embed", "tiny-cls"} <= ids

    one = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0)
    two = c.chat.completions.create(model="ad-two", messages=CHAT, max_tokens=12, temperature=0)
    assert one.id.startswith("chatcmpl-") and one.choices[0].finish_reason in ("length", "stop")
    assert one.usage.completion_tokens > 0 and one.usage.prompt_tokens > 10
    assert one.choices[0].message.content != two.choices[0].message.content  # adapters switch per request

    chunks = list(
        c.chat.completions.create(
            model="ad-one", messages=CHAT, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == one.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == one.usage.completion_tokens
    assert len({ch.id for ch in chunks}) == 1

    sampled = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=8, temperature=1.0, top_p=0.9, n=2, seed=7)
    again = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=8, temperature=1.0, top_p=0.9, n=2, seed=7)
    assert len(sampled.choices) == 2
    assert [ch.message.content for ch in sampled.choices] == [ch.message.content for ch in again.choices]  # seeded

    text = c.completions.create(model="ad-two", prompt="The warranty is", max_tokens=6, temperature=0)
    assert text.id.startswith("cmpl-") and text.choices[0].text
    streamed = "".join(
        ch.choices[0].text
        for ch in c.completions.create(model="ad-two", prompt="The warranty is", max_tokens=6, temperature=0, stream=True)
    )
    assert streamed == text.choices[0].text


def test_stop_strings_embeddings_classify(env):
    c = client(env)
    full = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0).choices[0].message.content
    cut = full[3:5]
    stopped = c.chat.completions.create(model="ad-one", messages=CHAT, max_tokens=12, temperature=0, stop=[cut])
    assert stopped.choices[0].finish_reason == "stop" and cut not in stopped.choices[0].message.content
    assert full.startswith(stopped.choices[0].message.content)

    emb = c.embeddings.create(model="tiny-embed", input=["where is my parcel", "refund please"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 32
    assert sum(x * x for x in emb.data[0].embedding) == pytest.approx(1.0, rel=1e-4)

    r = post(env, "/v1/classify", {"model": "tiny-cls", "input": ["I was charged twice", "parcel lost"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("clf-") and [d["index"] for d in body["data"]] == [0, 1]
    assert set(body["data"][0]["scores"]) == {"billing", "shipping", "tech_support"}
    assert sum(body["data"][0]["scores"].values()) == pytest.approx(1.0, rel=1e-4)

    registered = post(env, "/v1/classify", {"model": CLS_TASK, "input": "I was charged twice"}).json()
    assert registered["system_fingerprint"] == f"{CLS_TASK}:1"
    assert set(registered["data"][0]["scores"]) == {"billing", "shipping", "tech_support"}

    wrong = post(env, "/v1/embeddings", {"model": "ad-one", "input": "x"})
    assert wrong.status_code == 400 and "chat model" in wrong.json()["error"]["message"]


def test_auth_scopes_and_revocation(env):
    from tuneloom.cli import app as cli

    assert post(env, "/v1/chat/completions", {"model": "ad-one", "messages": CHAT}, key=None).status_code == 401
    assert post(env, "/v1/chat/completions", {"model": "ad-one", "messages": CHAT}, key="tlk_nope_nope").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(env, "wrong").models.list()

    made = runner.invoke(cli, ["keys", "create", "-m", "ad-one", "-c", str(env["project"])])
    scoped = made.output.strip().splitlines()[-1]
    key_id = scoped.split("_")[1]
    stored = (env["ws"] / "serve" / "keys.json").read_text()
    assert scoped.split("_", 2)[2] not in stored and key_id in stored  # only the salted hash is kept
    assert oct((env["ws"] / "serve" / "keys.json").stat().st_mode & 0o777) == "0o600"
    assert [m.id for m in client(env, scoped).models.list().data] == ["ad-one"]
    assert client(env, scoped).chat.completions.create(model="ad-one", messages=CHAT, max_tokens=2).choices
    denied = post(env, "/v1/chat/completions", {"model": "ad-two", "messages": CHAT, "max_tokens": 2}, key=scoped)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"

    listed = runner.invoke(cli, ["keys", "list", "-c", str(env["project"])])
    assert key_id in listed.output and scoped not in listed.output
    assert runner.invoke(cli, ["keys", "revoke", key_id, "-c", str(env["project"])]).exit_code == 0
    assert post(env, "/v1/chat/completions", {"model": "ad-one", "messages": CHAT}, key=scoped).status_code == 401
    bad = runner.invoke(cli, ["keys", "revoke", "nosuch", "-c", str(env["project"])])
    assert bad.exit_code == 2 and "no key with id 'nosuch'" in bad.output


def test_limits_and_no_paths(env):
    def code(body: dict, path: str = "/v1/chat/completions") -> tuple[int, str]:
        r = post(env, path, body)
        return r.status_code, r.json()["error"]["code"] if r.status_code != 200 else ""

    assert code({"model": "ad-one", "messages": CHAT, "max_tokens": 65}) == (400, "max_tokens_over_limit")
    assert code({"model": "ad-one", "messages": CHAT, "n": 5}) == (400, "n_over_limit")
    long = [{"role": "user", "content": "reset the plug " * 100}]
    assert code({"model": "ad-one", "messages": long, "max_tokens": 2}) == (400, "prompt_too_long")
    huge = [{"role": "user", "content": "x" * 30000}]
    assert code({"model": "ad-one", "messages": huge}) == (413, "body_too_large")
    for ref in ("../adapters/one", "/tmp", str(env["root"] / "adapters" / "one"), "adapters/one", "qa:99", "nope"):
        status, err = code({"model": ref, "messages": CHAT, "max_tokens": 2})
        assert (status, err) == (404, "model_not_found"), ref
    bad = post(env, "/v1/chat/completions", {"model": "ad-one", "messages": [], "temperature": 9})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]


def test_overload_429_and_draining_503(env):
    state = env["server"].state
    body = {"model": "ad-one", "messages": CHAT, "max_tokens": 8, "temperature": 0, "n": 4}
    assert post(env, "/v1/chat/completions", body).status_code == 200
    engine = next(iter(state.backend._chat.values())).engine
    release, on_step = threading.Event(), engine.on_step
    engine.on_step = lambda *a: release.wait(20)  # hold the engine after its next step: the tiny model is too fast
    try:
        first = threading.Thread(target=post, args=(env, "/v1/chat/completions", body))
        first.start()
        deadline = time.monotonic() + 20
        while state.backend.load()[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.backend.load() == (4, 0)  # 4 running, batch full; the queue holds 2
        second = post(env, "/v1/chat/completions", {**body, "n": 3})
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert second.json()["error"]["code"] == "overloaded"
    finally:
        engine.on_step = on_step
        release.set()
    first.join(30)
    state.draining = True
    try:
        r = post(env, "/v1/chat/completions", {"model": "ad-one", "messages": CHAT})
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert httpx.get(env["server"].url + "/ready").status_code == 503
    finally:
        state.draining = False
    assert httpx.get(env["server"].url + "/ready").json()["ready"] is True
    assert httpx.get(env["server"].url + "/health").json() == {"status": "ok"}


def test_request_timeout(env):
    settings = env["server"].state.settings
    settings.request_timeout_s = 0.001
    try:
        r = post(env, "/v1/chat/completions", {"model": "ad-one", "messages": CHAT, "max_tokens": 8})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        with httpx.stream(
            "POST",
            env["server"].url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {env['key']}"},
            json={"model": "ad-one", "messages": CHAT, "max_tokens": 8, "stream": True},
            timeout=60,
        ) as s:
            lines = [line for line in s.iter_lines() if line]
        assert '"code": "timeout"' in lines[-1] and "[DONE]" not in lines[-1]
    finally:
        settings.request_timeout_s = 60


def test_chat_prompt_matches_training(smollm2_tokenizer):
    from tuneloom.serve.responses import chat_prompt
    from tuneloom.train.sft import IGNORE, encode_chat

    user = [{"role": "user", "content": "Can I return the plug?"}]
    ids, messages = chat_prompt(smollm2_tokenizer, user, "You are Acme's assistant.")
    assert messages[0] == {"role": "system", "content": "You are Acme's assistant."}
    trained = encode_chat(smollm2_tokenizer, [*messages, {"role": "assistant", "content": "Yes, within 30 days."}], 512)
    first_answer_token = next(i for i, label in enumerate(trained["labels"]) if label != IGNORE)
    assert ids == trained["input_ids"][:first_answer_token]  # the prompt is exactly what training put before the answer
    own_system = [{"role": "system", "content": "Answer in French."}, *user]
    assert chat_prompt(smollm2_tokenizer, own_system, "You are Acme's assistant.")[1] == own_system


def test_disconnect_stops_generation(env):
    state = env["server"].state
    body = {"model": "ad-two", "messages": CHAT, "max_tokens": 64, "temperature": 0, "n": 4, "stream": True}
    with httpx.stream(
        "POST",
        env["server"].url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {env['key']}"},
        timeout=60,
    ) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while state.backend.load() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.backend.load() == (0, 0)


def test_hot_promotion_keeps_in_flight_requests(env):
    c, registry = client(env), env["registry"]
    expected = {v: c.chat.completions.create(model=f"qa:{v}", messages=CHAT, max_tokens=16, temperature=0) for v in (1, 2)}
    assert expected[1].choices[0].message.content != expected[2].choices[0].message.content
    before = c.chat.completions.create(model="qa", messages=CHAT, max_tokens=16, temperature=0)
    assert before.system_fingerprint == "qa:1"
    assert before.choices[0].message.content == expected[1].choices[0].message.content

    stream = c.chat.completions.create(model="qa@production", messages=CHAT, max_tokens=16, temperature=0, stream=True)
    first = next(iter(stream))
    registry.promote("qa", 2)
    rest = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert (first.choices[0].delta.content or "") + rest == expected[1].choices[0].message.content  # kept version 1
    time.sleep(0.3)  # > alias_ttl_s
    after = c.chat.completions.create(model="qa", messages=CHAT, max_tokens=16, temperature=0)
    assert after.system_fingerprint == "qa:2"
    assert after.choices[0].message.content == expected[2].choices[0].message.content
    registry.rollback("qa")


def test_feedback_sqlite_is_committed_before_the_answer(env):
    c = client(env)
    answer = c.chat.completions.create(model="ad-two", messages=CHAT, max_tokens=6, temperature=0)
    db = env["ws"] / "serve" / "feedback.db"
    with sqlite3.connect(db) as con:  # a separate connection sees it: committed, not just cached
        row = con.execute(
            "select model, served, request, response from tuneloom_completions where id = ?", (answer.id,)
        ).fetchone()
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert row[:2] == ("ad-two", "ad-two")
    assert json.loads(row[2])["messages"][0] == {"role": "system", "content": "Be brief."}  # the model's system prompt
    assert json.loads(row[3])["choices"] == [answer.choices[0].message.content]

    ok = post(
        env, "/v1/feedback", {"completion_id": answer.id, "rating": "down", "correction": "Hold it 10 s.", "tags": ["wrong"]}
    )
    assert ok.status_code == 200 and ok.json()["stored"] is True
    assert post(env, "/v1/feedback", {"completion_id": answer.id, "rating": 4}).status_code == 200
    assert post(env, "/v1/feedback", {"completion_id": answer.id, "rating": 7}).status_code == 400
    assert post(env, "/v1/feedback", {"completion_id": "chatcmpl-nope", "rating": "up"}).status_code == 404
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select rating, rating_kind, correction, tags from tuneloom_feedback where completion_id = ? order by id",
            (answer.id,),
        ).fetchall()
    assert [(r[0], r[1], r[2], json.loads(r[3])) for r in rows] == [
        (1, "thumbs", "Hold it 10 s.", ["wrong"]),
        (4, "scale", None, []),
    ]


def test_stored_requests_and_answers_are_redacted_when_configured(env):
    from tuneloom.config import RedactConfig, load_project
    from tuneloom.serve import create_app

    project = load_project(env["project"])
    settings = project.config.serve.model_copy(update={"redact": RedactConfig(enabled=True)})
    server = LiveServer(create_app(project, settings))
    try:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key=env["key"], max_retries=0, timeout=60)
        said = "I am jane.doe@example.com, call +44 20 7946 0958 or write to jane.doe@example.com"
        answer = c.chat.completions.create(
            model="ad-one", messages=[{"role": "user", "content": said}], max_tokens=4, temperature=0
        )
    finally:
        server.stop()
    with sqlite3.connect(env["ws"] / "serve" / "feedback.db") as con:
        request = con.execute("select request from tuneloom_completions where id = ?", (answer.id,)).fetchone()[0]
    assert json.loads(request)["messages"][-1] == {
        "role": "user",
        "content": "I am <EMAIL_1>, call <PHONE_1> or write to <EMAIL_1>",
    }
    assert "example.com" not in request and "7946" not in request


def test_metrics_and_access_log(env, caplog):
    import logging

    c = client(env)
    with caplog.at_level(logging.INFO, logger="tuneloom.serve.access"):
        c.chat.completions.create(model="ad-one", messages=[{"role": "user", "content": "secret-prompt-text"}], max_tokens=3)
        deadline = time.monotonic() + 10  # the line is written once the last byte is sent, maybe after the client has it
        while "/v1/chat/completions 200" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert httpx.get(env["server"].url + "/v1/models", headers={"Authorization": "Bearer tlk_a_b"}).status_code == 401
    text = httpx.get(env["server"].url + "/metrics").text
    for name in (
        "tuneloom_request_latency_seconds_bucket",
        "tuneloom_time_to_first_token_seconds_count",
        "tuneloom_generation_tokens_per_second",
        "tuneloom_queue_depth",
        "tuneloom_batch_size_bucket",
        'tuneloom_adapter_cache_total{result="hit"}',
        'tuneloom_rejected_total{reason="invalid_api_key"}',
    ):
        assert name in text, name
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/v1/chat/completions 200" in logged
    assert "secret-prompt-text" not in logged and env["key"] not in logged and env["key"].split("_")[1] in logged


@pytest.mark.skipif(
    not os.environ.get("TUNELOOM_TEST_POSTGRES_URL"),
    reason="TUNELOOM_TEST_POSTGRES_URL is not set (CI's .ci/run starts PostgreSQL and sets it)",
)
def test_feedback_postgresql():
    import uuid

    from tuneloom.serve.feedback import FeedbackStore

    store = FeedbackStore(os.environ["TUNELOOM_TEST_POSTGRES_URL"])
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    store.record_completion(
        id=cid,
        endpoint="chat.completion",
        model="qa",
        served="qa:1",
        key_id="k1",
        request={"messages": [{"role": "user", "content": "hi"}]},
        response={"choices": ["hello"]},
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=1,
        latency_ms=5,
    )
    assert store.record_feedback(cid, "up", "hello there", ["good"], "k1") is not None
    assert store.record_feedback("chatcmpl-unknown", 3, None, [], None) is None
    again = FeedbackStore(os.environ["TUNELOOM_TEST_POSTGRES_URL"])  # a fresh connection pool sees the commit
    assert again.completion(cid).request["messages"][0]["content"] == "hi"
    assert [(f.rating, f.rating_kind, f.tags) for f in again.feedback_for(cid)] == [(5, "thumbs", ["good"])]
    store.close()
    again.close()


def test_feedback_store_bad_url(tmp_path):
    from tuneloom.errors import TuneloomError
    from tuneloom.serve.feedback import FeedbackStore

    with pytest.raises(TuneloomError, match="not usable"):
        FeedbackStore(f"sqlite:///{tmp_path}/missing-dir/x.db")


# --------------------------------------------------------------------------------------------
# engine, adapters, backend selection, config


def _run_engine(engine, jobs, stagger: float = 0.0):
    """Submit (prompt ids, adapter) jobs greedily; returns each job's tokens."""
    from tuneloom.serve.engine import SamplingParams, Sequence

    done = threading.Semaphore(0)
    seqs = [
        Sequence(
            index=0,
            prompt_ids=ids,
            adapter=adapter,
            params=SamplingParams(max_tokens=10, temperature=0),
            emit=lambda e: done.release() if e.finish_reason else None,
            deadline=time.monotonic() + 60,
        )
        for ids, adapter in jobs
    ]
    for s in seqs:
        engine.submit([s])
        time.sleep(stagger)
    for _ in seqs:
        assert done.acquire(timeout=300)
    return [s.out_ids for s in seqs]


def _greedy(model, ids, adapter, max_new_tokens=10):
    import torch

    x = torch.tensor([ids])
    with torch.inference_mode():
        return _generate(model, x, adapter, max_new_tokens)[0, len(ids) :].tolist()


def _generate(model, x, adapter, max_new_tokens):
    if adapter is None:
        with model.disable_adapter():
            return model.generate(input_ids=x, max_new_tokens=max_new_tokens, do_sample=False)
    model.set_adapter(adapter)
    return model.generate(input_ids=x, max_new_tokens=max_new_tokens, do_sample=False)


def _mixed_batch_check(base_dir: Path, adapters: list[Path], dtype, int8: bool = False) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloom.serve.adapters import AdapterCache
    from tuneloom.serve.engine import BatchEngine
    from tuneloom.serve.int8 import quantize_decoder

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype).eval()
    if int8:
        quantize_decoder(base)
    cache = AdapterCache(base, 2**30)
    for i, path in enumerate(adapters):
        cache.acquire(f"a{i}", path)
    engine = BatchEngine(cache.model, tokenizer, max_batch_size=8, max_queue=8, prepare_adapter=cache.prepare)
    prompts = [
        "How do I reset my camera?",
        "What is the capital of France?",
        "hi",
        "Write a haiku about rain.",
        "Is the Doorbell Pro waterproof?",
        "Two plus two is",
    ]
    jobs = [
        (
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"],
            [None, "a0", "a1"][i % 3],
        )
        for i, p in enumerate(prompts)
    ]
    together = _run_engine(engine, jobs)  # one prefill, one batch
    staggered = _run_engine(engine, jobs, 0.01)  # sequences join a running batch at token boundaries
    alone = [_run_engine(engine, [job])[0] for job in jobs]  # one adapter per batch: peft's active adapter switches
    engine.close()
    model = cache.model
    eos = tokenizer.eos_token_id
    for (ids, adapter), a, b, c in zip(jobs, together, staggered, alone):
        ref = _greedy(model, ids, adapter)
        ref = ref[: ref.index(eos)] if eos in ref else ref
        assert a == ref and b == ref and c == ref, (adapter, a, b, c, ref)


@pytest.mark.parametrize("int8", [False, True], ids=["model-weights", "int8-decode"])
def test_mixed_adapter_batch_equals_per_adapter_greedy_tiny(env, tiny_llama_dir, int8):
    import torch

    adapters = [env["root"] / "adapters" / "one", env["root"] / "adapters" / "two"]
    _mixed_batch_check(tiny_llama_dir, adapters, torch.float32, int8=int8)


@pytest.mark.slow
def test_mixed_adapter_batch_equals_per_adapter_greedy_smollm2(smollm2_dir, tmp_path):
    import torch

    adapters = [make_adapter(smollm2_dir, tmp_path / f"ad{i}", i) for i in (1, 2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a CPU shared with other jobs, 2 threads spin against each other
    try:  # fp32: in bf16, batched and single-row matmuls round differently and greedy paths can part
        _mixed_batch_check(smollm2_dir, adapters, torch.float32)
    finally:
        torch.set_num_threads(threads)


def test_adapter_cache_lru_respects_pins(env, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from tuneloom.serve.adapters import AdapterCache

    one, two = env["root"] / "adapters" / "one", env["root"] / "adapters" / "two"
    size = (one / "adapter_model.safetensors").stat().st_size
    evictions = []
    cache = AdapterCache(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), int(size * 1.5), lambda: evictions.append(1))
    assert cache.acquire("one", one) is False
    cache.prepare("one")
    assert cache.acquire("one", one) is True  # loaded: a hit
    cache.acquire("two", two)
    cache.prepare("two")
    assert sorted(cache.loaded()) == ["one", "two"] and not evictions  # "one" is pinned: over budget, not evicted
    cache.release("one")
    cache.release("one")
    cache.release("two")
    cache.acquire("one", one)
    cache.prepare("one")  # touch "one": "two" is now least recently used... but nothing is over budget yet
    cache.release("one")
    third = env["root"] / "adapters" / "three"
    shutil.copytree(one, third, dirs_exist_ok=True)
    cache.acquire("three", third)
    cache.prepare("three")
    assert sorted(cache.loaded()) == ["three"] and len(evictions) == 2
    with pytest.raises(Exception, match="only safetensors"):
        cache.acquire("bad", env["root"])


def test_engine_queue_limit_and_graceful_close(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloom.serve.engine import BatchEngine, Overloaded, SamplingParams, Sequence

    engine = BatchEngine(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        AutoTokenizer.from_pretrained(tiny_llama_dir),
        max_batch_size=1,
        max_queue=1,
    )
    ends: list[str] = []

    def seq(tokens: int) -> Sequence:
        return Sequence(
            index=0,
            prompt_ids=[1, 2, 3],
            adapter=None,
            params=SamplingParams(max_tokens=tokens, temperature=0),
            emit=lambda e: ends.append(e.finish_reason) if e.finish_reason else None,
            deadline=time.monotonic() + 60,
        )

    release = threading.Event()
    engine.on_step = lambda *a: release.wait(20)  # hold the engine after each step until released
    engine.submit([seq(8)])
    deadline = time.monotonic() + 20
    while engine.load != (1, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.submit([seq(8)])  # waits: the batch holds one sequence
    with pytest.raises(Overloaded, match=r"queue limit 1") as exc:
        engine.submit([seq(8)])
    assert exc.value.retry_after >= 1
    engine.on_step = None
    release.set()
    engine.close(grace_s=60)  # graceful: both finish before the engine stops
    assert ends == ["length", "length"]
    with pytest.raises(Overloaded, match="shutting down"):  # a closed engine takes nothing
        engine.submit([seq(2)])


def test_backend_selection():
    from tuneloom.serve.backends import select_backend

    # vLLM's own environment and its errors: tests/serve/test_vllm.py
    assert select_backend("auto", gpu=False) == "transformers"
    assert select_backend("auto", vllm_python=None, gpu=True) == "transformers"  # no vllm importable here
    assert select_backend("transformers", gpu=True) == "transformers"


def test_serve_config_errors(data_project_dir):
    from tuneloom.cli import app as cli
    from tuneloom.config import load_project
    from tuneloom.errors import ProjectFileError

    path = data_project_dir / "tuneloom.yaml"
    path.write_text(path.read_text() + "serve:\n  max_batch: 4\n")
    with pytest.raises(ProjectFileError, match=r"serve.max_batch .*unknown key.*max_batch_size"):
        load_project(path)
    path.write_text(path.read_text().replace("max_batch: 4", "backend: vllm"))
    result = runner.invoke(cli, ["serve", "-c", str(path)])
    assert result.exit_code == 2 and "serve.backend is vllm but" in result.output
    result = runner.invoke(cli, ["serve", "-c", str(path), "--backend", "transformers", "--no-auth", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--no-auth is only allowed on a loopback address" in result.output
