"""Serving with a knowledge base: sources in answers (whole and streamed), POST /v1/search, access tags
from API keys, retrieval latency in /metrics, and a rebuilt index picked up while requests run.

One live server (tiny Llama, with and without the knowledge base) over a real index of four Markdown
documents embedded with the packaged MiniLM; the official `openai` client talks to it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
import yaml

from tests.conftest import write_project
from tests.serve.test_serve import LiveServer, make_adapter, make_run

pytestmark = pytest.mark.slow  # builds a tiny Llama and an index with the packaged MiniLM (about a minute)

DOCS = {
    "refunds.md": "# Refunds\n\nRefunds are paid back to the original card within 14 days of the return arriving.\n",
    "shipping.md": "# Shipping\n\nStandard parcels ship within 2 working days; express parcels arrive the next day.\n",
    "hr/vacation.md": "# Vacation\n\nEvery employee gets 27 days of paid vacation per calendar year.\n",
    "finance/salaries.md": "# Salaries\n\nSalary bands are reviewed every April by the finance committee.\n",
}
VACATION = [{"role": "user", "content": "How many days of paid vacation does an employee get?"}]


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    from tuneloom.config import load_project
    from tuneloom.knowledge import build_index
    from tuneloom.serve import create_app
    from tuneloom.serve.auth import KeyStore, keys_path

    root = tmp_path_factory.mktemp("serve-kb")
    project_file = write_project(root, tiny_llama_dir, tiny_bert_dir)
    for name, text in DOCS.items():
        (root / "kb" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "kb" / name).write_text(text, encoding="utf-8")
    config = yaml.safe_load(project_file.read_text())
    config["knowledge"] = [
        {"name": "handbook", "sources": [{"path": "kb"}], "access": {"tags_from_folder": True}, "chunking": {"max_tokens": 128}}
    ]
    config["serve"] = {
        "models": [
            {"name": "rag-llama", "path": str(tiny_llama_dir), "knowledge": "handbook"},
            {"name": "plain-llama", "path": str(tiny_llama_dir)},
            {"name": "mapped-llama", "path": str(tiny_llama_dir)},
        ],
        "knowledge": {"mapped-llama": "handbook"},
        "knowledge_check_s": 0,
        "limits": {"max_tokens": 16, "max_prompt_tokens": 500},
    }
    project_file.write_text(yaml.safe_dump(config, sort_keys=False))
    project = load_project(project_file)
    build_index(project, "handbook", progress=False)
    register_grounded_run(project, tiny_llama_dir)
    keys = KeyStore(keys_path(project.workspace))
    made = {
        "all": keys.create(["*"])[1],
        "public": keys.create(["*"], tags=[])[1],
        "hr": keys.create(["*"], tags=["hr"])[1],
        "plain": keys.create(["plain-llama"])[1],
    }
    server = LiveServer(create_app(project))
    yield {"root": root, "project": project, "server": server, "keys": made}
    server.stop()


def register_grounded_run(project, tiny_llama_dir: Path) -> None:
    """`qa-rag`: a registered chat version whose task retrieves from `handbook` with two passages per prompt."""
    from tuneloom.registry import ModelRegistry

    run = make_run(project.workspace, project.path, "20260101-100000", make_adapter(tiny_llama_dir, project.root / "a", 1))
    snapshot = yaml.safe_load((run / "config.yaml").read_text())
    snapshot["task"] |= {"knowledge": "handbook", "rag": {"top_k": 2, "passage_chars": 120}}
    (run / "config.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    registry = ModelRegistry(project.workspace)
    registry.register_run(run, "qa-rag")
    registry.promote("qa-rag", 1)


def client(env, key: str = "all") -> openai.OpenAI:
    return openai.OpenAI(base_url=env["server"].url + "/v1", api_key=env["keys"][key], max_retries=0, timeout=60)


def search(env, body: dict, key: str = "all") -> httpx.Response:
    headers = {"Authorization": f"Bearer {env['keys'][key]}"}
    return httpx.post(env["server"].url + "/v1/search", json=body, headers=headers, timeout=60)


def documents(sources: list[dict]) -> set[str]:
    return {s["document"] for s in sources}


def test_chat_answers_carry_sources_and_the_prompt_holds_the_passages(env):
    answer = client(env).chat.completions.create(model="rag-llama", messages=VACATION, max_tokens=8, temperature=0)
    sources = answer.model_extra["tuneloom_sources"]
    assert sources[0]["document"] == "kb/hr/vacation.md" and sources[0]["section"] == ["Vacation"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1)) and len(sources) <= 3
    assert {"chunk_id", "score"} <= set(sources[0]) and sources[0]["chunk_id"].startswith("kb/hr/vacation.md")
    stored = env["server"].state.feedback.completion(answer.id)
    question = stored.request["messages"][-1]["content"]
    assert "27 days of paid vacation" in question and question.endswith("Question: " + VACATION[0]["content"])
    assert stored.response["sources"] == sources

    chunks = list(
        client(env).chat.completions.create(model="rag-llama", messages=VACATION, max_tokens=8, temperature=0, stream=True)
    )
    assert chunks[0].model_extra["tuneloom_sources"] == sources
    assert all("tuneloom_sources" not in (c.model_extra or {}) for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer.choices[0].message.content

    plain = client(env).chat.completions.create(model="plain-llama", messages=VACATION, max_tokens=4, temperature=0)
    assert "tuneloom_sources" not in (plain.model_extra or {})


def test_the_knowledge_base_comes_from_the_task_or_the_serve_section(env):
    registered = client(env).chat.completions.create(model="qa-rag", messages=VACATION, max_tokens=4)
    assert registered.system_fingerprint == "qa-rag:1"
    assert len(registered.model_extra["tuneloom_sources"]) == 2  # the task's rag.top_k
    question = env["server"].state.feedback.completion(registered.id).request["messages"][-1]["content"]
    assert "[2] kb/" in question and "[3]" not in question
    mapped = client(env).chat.completions.create(model="mapped-llama", messages=VACATION, max_tokens=4)
    assert mapped.model_extra["tuneloom_sources"][0]["document"] == "kb/hr/vacation.md"


def test_an_unknown_knowledge_base_stops_the_start(env):
    from tuneloom.errors import ProjectFileError
    from tuneloom.serve import create_app

    project = env["project"]
    settings = project.config.serve.model_copy(update={"knowledge": {"plain-llama": "handbok"}})
    with pytest.raises(ProjectFileError, match="no knowledge base named 'handbok'.*handbook"):
        create_app(project, settings)


def test_key_tags_decide_what_retrieval_sees(env):
    public = client(env, "public").chat.completions.create(model="rag-llama", messages=VACATION, max_tokens=4)
    seen = documents(public.model_extra["tuneloom_sources"])
    assert seen and not seen & {"kb/hr/vacation.md", "kb/finance/salaries.md"}
    prompt = env["server"].state.feedback.completion(public.id).request["messages"][-1]["content"]
    assert "27 days" not in prompt

    query = {"knowledge": "handbook", "query": "salary bands vacation days", "k": 10}
    assert {"kb/hr/vacation.md", "kb/finance/salaries.md"} <= {d["document"] for d in search(env, query).json()["data"]}
    hr = {d["document"] for d in search(env, query, "hr").json()["data"]}
    assert "kb/hr/vacation.md" in hr and "kb/finance/salaries.md" not in hr
    assert not {d["document"] for d in search(env, query, "public").json()["data"]} & {
        "kb/hr/vacation.md",
        "kb/finance/salaries.md",
    }


def test_search_endpoint(env):
    found = search(env, {"model": "rag-llama", "query": "When do refunds arrive?", "k": 2})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["knowledge"] == "handbook" and len(body["data"]) == 2
    top = body["data"][0]
    assert top["document"] == "kb/refunds.md" and "14 days" in top["text"] and top["section"] == ["Refunds"]
    assert body["data"][0]["score"] >= body["data"][1]["score"]
    assert search(env, {"knowledge": "handbook", "query": "refunds", "where": {"team": "x"}}).json()["data"] == []

    cases = [
        ({"model": "plain-llama", "query": "x"}, "all", 400, "no_knowledge"),
        ({"knowledge": "nope", "query": "x"}, "all", 404, "knowledge_not_found"),
        ({"knowledge": "handbook", "query": "x"}, "plain", 403, "knowledge_not_allowed"),
        ({"model": "rag-llama", "query": "x"}, "plain", 403, "model_not_allowed"),
    ]
    for body, key, status, code in cases:
        r = search(env, body, key)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    both = search(env, {"knowledge": "handbook", "model": "rag-llama", "query": "x"})
    assert both.status_code in (400, 422) and "exactly one" in both.text
    anonymous = httpx.post(env["server"].url + "/v1/search", json={"knowledge": "handbook", "query": "x"}, timeout=30)
    assert anonymous.status_code == 401


def test_retrieval_latency_in_metrics(env):
    search(env, {"knowledge": "handbook", "query": "refunds"})
    text = httpx.get(env["server"].url + "/metrics", timeout=30).text
    count = [
        line for line in text.splitlines() if line.startswith('tuneloom_retrieval_latency_seconds_count{knowledge="handbook"}')
    ]
    assert count and float(count[0].split()[-1]) >= 1
    assert 'tuneloom_knowledge_reloads_total{knowledge="handbook",result="opened"} 1.0' in text


def test_updated_and_rebuilt_index_is_picked_up_while_requests_run(env):
    from tuneloom.knowledge import build_index, update_index

    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(search(env, {"knowledge": "handbook", "query": "warranty of the kettle"}).status_code)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        (env["root"] / "kb" / "warranty.md").write_text("# Warranty\n\nThe Zephyr kettle carries a 7 year warranty.\n")
        update_index(env["project"], "handbook", progress=False)
        assert wait_for(env, "kb/warranty.md")
        during_update, statuses[:] = list(statuses), []
        (env["root"] / "kb" / "warranty.md").unlink()
        build_index(env["project"], "handbook", progress=False)  # a rebuild: a new table, switched to at the end
        assert wait_for(env, None)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert during_update and set(during_update) == {200}
    # The rebuild writes a new table and switches at the end: the old index answers until then, never a 503.
    assert statuses and set(statuses) == {200}
    metrics = httpx.get(env["server"].url + "/metrics", timeout=30).text
    assert 'tuneloom_knowledge_reloads_total{knowledge="handbook",result="reloaded"}' in metrics


def wait_for(env, document: str | None, timeout: float = 30) -> bool:
    """Until the top hit for the kettle question is `document` (None: until warranty.md is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = search(env, {"knowledge": "handbook", "query": "Zephyr kettle warranty"}).json()["data"]
        docs = [d["document"] for d in data]
        if (docs and docs[0] == document) if document else "kb/warranty.md" not in docs:
            return True
        time.sleep(0.2)
    return False


def test_keys_create_with_tags_from_the_cli(env, tmp_path: Path):
    from typer.testing import CliRunner

    from tuneloom.cli import app as cli

    runner = CliRunner()
    project = str(env["project"].path)
    made = runner.invoke(cli, ["keys", "create", "-m", "*", "--tag", "hr", "--tag", "finance", "-c", project])
    assert made.exit_code == 0 and "knowledge: finance, hr" in made.output, made.output
    both = runner.invoke(cli, ["keys", "create", "-m", "*", "--tag", "hr", "--public-only", "-c", project])
    assert both.exit_code != 0 and "exclude each other" in both.output
    listed = runner.invoke(cli, ["keys", "list", "-c", project])
    assert "(untagged only)" in listed.output and "finance, hr" in listed.output
