"""The console's routes without a browser: logins, every route's permissions and CSRF, jobs, registry, playground."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK
from tuneloom.config import load_project
from tuneloom.ui import create_console
from tuneloom.ui.sessions import COOKIE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # the shared workspace takes a minute to build

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def app(console_ws):
    return create_console(load_project(console_ws.config))


def client(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def login(app, key: str) -> tuple[TestClient, str]:
    """A logged-in client and its session's CSRF token."""
    c = client(app)
    token = _CSRF.search(c.get("/login").text).group(1)
    r = c.post("/login", data={"key": key, "csrf": token, "next": "/runs"})
    assert r.status_code == 303 and r.headers["location"] == "/runs", r.text
    return c, _CSRF.search(c.get("/").text).group(1)


def run_names(ws) -> dict[str, list[str]]:
    from tuneloom.artifacts import read_snapshot

    out: dict[str, list[str]] = {CHAT_TASK: [], CLS_TASK: []}
    for run in sorted((ws.workspace / "runs").iterdir()):
        out[read_snapshot(run).task["name"]].append(run.name)
    return out


def pages(ws) -> list[str]:
    runs = run_names(ws)
    cls_run = runs[CLS_TASK][0]
    (version,) = [p.name for p in (ws.workspace / "datasets" / CLS_TASK).iterdir() if p.is_dir()]
    return [
        "/",
        "/data",
        f"/data/{CLS_TASK}/{version}",
        f"/data/{CLS_TASK}/{version}?q=empty",
        "/runs",
        f"/runs/{cls_run}",
        f"/runs/{cls_run}/eval",
        "/eval",
        f"/compare?run={cls_run}&run={runs[CHAT_TASK][0]}",
        "/registry",
        f"/registry/{CLS_TASK}",
        "/playground",
        "/feedback",
        "/scout",
    ]


def test_pages_need_a_login_and_open_for_reviewers(app, console_ws):
    anonymous = client(app)
    reviewer, _ = login(app, console_ws.reviewer_key)
    for path in pages(console_ws):
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
        page = reviewer.get(path)
        assert page.status_code == 200, (path, page.text[-2000:])
        assert "Log out" in page.text and "Content-Security-Policy" in page.headers
        assert "http://" not in page.text.replace("http://testserver", "") or path == "/"  # nothing from elsewhere


def test_the_pages_show_the_workspace(app, console_ws):
    c, _ = login(app, console_ws.reviewer_key)
    runs = run_names(console_ws)
    assert f"{CLS_TASK}" in c.get("/").text and "is valid" in c.get("/").text
    data = c.get("/data").text
    assert "(latest)" in data and "No dataset prepared yet" not in data.split(CLS_TASK, 1)[1].split("</section>")[0]
    (version,) = [p.name for p in (console_ws.workspace / "datasets" / CLS_TASK).iterdir() if p.is_dir()]
    detail = c.get(f"/data/{CLS_TASK}/{version}").text
    assert "✓ yes" in detail and "Examples per label" in detail and "exact_duplicate" in detail
    assert "No rejected row matches" in c.get(f"/data/{CLS_TASK}/{version}?q=zzzz-nothing").text
    ev = c.get(f"/runs/{runs[CLS_TASK][0]}/eval").text
    assert "accuracy" in ev and "95% interval" in ev and "Per class" in ev and ("✓ passed" in ev or "✗ failed" in ev)
    assert "Tokens per example, per split" in detail and "train median" in detail
    project_page = c.get("/").text
    assert f"Evaluate {runs[CHAT_TASK][-1]}" in project_page  # each task's next step, named
    assert "No scout results yet" in c.get("/scout").text
    assert "Launch a job" not in c.get("/runs").text  # reviewers do not launch


def test_unknown_names_and_paths_are_404(app, console_ws):
    c, _ = login(app, console_ws.reviewer_key)
    paths = ("/runs/nope", "/runs/%2e%2e", "/runs/..%2fworkspace/eval", f"/data/{CLS_TASK}/%2e%2e", "/data/nope/x")
    for path in (*paths, "/jobs/%2e%2e", "/jobs/20250101-000000-abcdef", "/registry/nope", "/compare?run=%2e%2e&run=x"):
        assert c.get(path).status_code == 404, path


def test_login_refusals(app, console_ws, caplog):
    c = client(app)
    caplog.set_level(logging.INFO)
    for key in ("tlk_nope_nope", console_ws.serve_key, ""):
        token = _CSRF.search(c.get("/login").text).group(1)
        r = c.post("/login", data={"key": key, "csrf": token})
        assert r.status_code == 401 and "neither the admin nor the reviewer scope" in r.text
    assert COOKIE not in c.cookies
    r = client(app).post("/login", data={"key": console_ws.admin_key, "csrf": "forged"})
    assert r.status_code == 401 and "login form expired" in r.text
    assert console_ws.admin_key not in caplog.text and console_ws.serve_key not in caplog.text


def test_open_redirects_are_refused(app, console_ws):
    c = client(app)
    token = _CSRF.search(c.get("/login?next=//evil.example").text).group(1)
    r = c.post("/login", data={"key": console_ws.reviewer_key, "csrf": token, "next": "https://evil.example/"})
    assert r.headers["location"] == "/"


def test_bad_and_expired_sessions_get_a_clear_page(app, console_ws):
    c = client(app)
    c.cookies.set(COOKIE, "made-up")
    r = c.get("/runs")
    assert r.status_code == 401 and "Your session has ended" in r.text and "Log in again" in r.text
    short = create_console(load_project(console_ws.config), idle_s=1.0)
    s, _ = login(short, console_ws.reviewer_key)
    time.sleep(1.2)
    r = s.get("/data")
    assert r.status_code == 401 and "Your session expired" in r.text and "idle limit" in r.text
    assert COOKIE not in s.cookies  # the stale cookie is cleared; the next visit goes to the login page


def test_sessions_survive_a_console_restart(app, console_ws):
    from tuneloom.ui.sessions import sessions_path

    c, csrf = login(app, console_ws.admin_key)
    token = c.cookies[COOKIE]
    restarted = create_console(load_project(console_ws.config))  # a new process would open the same table
    again = client(restarted)
    again.cookies.set(COOKIE, token)
    page = again.get("/runs")
    assert page.status_code == 200 and "Log out" in page.text
    assert again.post("/logout", data={"csrf": csrf}).status_code == 303  # the CSRF token survived too
    assert again.get("/runs").status_code == 401  # and logging out ended it everywhere
    path = sessions_path(console_ws.workspace)
    assert path.stat().st_mode & 0o777 == 0o600
    stored = b"".join(p.read_bytes() for p in path.parent.glob("sessions.db*"))
    assert token.encode() not in stored and csrf.encode() not in stored  # only the token's hash is kept


def test_revoking_the_key_ends_its_sessions(app, console_ws):
    from tuneloom.serve.auth import KeyStore, keys_path

    store = KeyStore(keys_path(console_ws.workspace))
    record, key = store.create(["*"], "temp", scopes=["reviewer"])
    c, _ = login(app, key)
    assert c.get("/data").status_code == 200
    store.revoke(record.id)
    assert c.get("/data").status_code == 401


def _post_routes() -> list[str]:
    """Every state-changing route of the console's routers (login and logout are tested on their own)."""
    from tuneloom.ui.routes import ROUTERS

    return [route.path for router in ROUTERS for route in router.routes if "POST" in getattr(route, "methods", set())]


def _fill(path: str, ws) -> str:
    run = run_names(ws)[CLS_TASK][0]
    filled = path.replace("{run}", run).replace("{name}", CLS_TASK).replace("{job_id}", "20250101-000000-abcdef")
    return filled.replace("{item_id}", "1")


ADMIN_ONLY = {
    "/jobs",
    "/jobs/{job_id}/cancel",
    "/runs/{run}/resume",
    "/runs/{run}/register",
    "/registry/{name}/promote",
    "/registry/{name}/rollback",
}
REVIEWER = {"/playground", "/playground/feedback", "/feedback/propose", "/feedback/{item_id}/decide", "/feedback/bulk-accept"}


def test_every_state_changing_route_needs_a_session_a_role_and_the_csrf_token(app, console_ws):
    routes = set(_post_routes())
    assert routes == ADMIN_ONLY | REVIEWER  # a new POST route must be classified here
    reviewer, reviewer_csrf = login(app, console_ws.reviewer_key)
    admin, admin_csrf = login(app, console_ws.admin_key)
    for path in routes:
        url = _fill(path, console_ws)
        r = client(app).post(url, data={"csrf": "x"})
        assert r.status_code == 401 and "Please log in" in r.text, path
        for c in (reviewer, admin):
            assert c.post(url, data={}).status_code == 403, path  # no token
            assert c.post(url, data={"csrf": "stale"}).status_code == 403, path
            assert c.post(url, data={}, headers={"X-CSRF-Token": "stale"}).status_code == 403, path
        if path in ADMIN_ONLY:
            r = reviewer.post(url, data={"csrf": reviewer_csrf})
            assert r.status_code == 403 and "needs an admin key" in r.text, path
    assert admin.post("/logout", data={"csrf": "stale"}).status_code == 403  # a forged logout ends nothing
    assert admin.get("/runs").status_code == 200
    assert admin.post("/logout", data={"csrf": admin_csrf}).status_code == 303
    assert admin.get("/runs").status_code == 303


def test_launch_validation(app, console_ws):
    admin, csrf = login(app, console_ws.admin_key)
    for form, message in (
        ({"kind": "rm"}, "unknown job kind"),
        ({"kind": "train", "task": "nope"}, "no task"),
        ({"kind": "train", "overrides": "train.lr=1\n; rm -rf /"}, "is not SETTING=VALUE"),
    ):
        r = admin.post("/jobs", data={"csrf": csrf, **form})
        assert r.status_code == 403 and message in r.text
    assert admin.post("/jobs", data={"csrf": csrf, "kind": "eval", "run": "../x"}).status_code == 404


def test_a_job_runs_on_the_server_streams_and_survives_the_console(app, console_ws):
    admin, csrf = login(app, console_ws.admin_key)
    r = admin.post("/jobs", data={"csrf": csrf, "kind": "gate", "task": CLS_TASK})
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[1]
    other = create_console(load_project(console_ws.config))  # a second console (a restart) sees the same job
    jobs = other.state.console.jobs
    deadline = time.time() + 120
    while jobs.get(job_id).state not in ("completed", "failed") and time.time() < deadline:
        time.sleep(0.5)
    job = jobs.get(job_id)
    assert job.argv[:2] == ["gate", f"latest:{CLS_TASK}"] and job.user is not None
    assert job.state in ("completed", "failed") and job.returncode is not None  # gate exits 1 when a rule fails
    with admin.stream("GET", f"/jobs/{job_id}/events") as stream:
        body = "".join(stream.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", body)
    assert [e for e, _ in events] == ["update", "done"]
    assert "gate" in json.loads(events[0][1])["log"]
    page = admin.get(f"/jobs/{job_id}").text
    assert "data-events" not in page and "Cancel job" not in page
    assert admin.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}).status_code == 403  # already ended


def test_cancel_a_running_job_and_resume_only_interrupted_runs(app, console_ws):
    admin, csrf = login(app, console_ws.admin_key)
    form = {"csrf": csrf, "kind": "train", "task": CLS_TASK, "overrides": "train.max_steps=100000"}
    job_id = admin.post("/jobs", data=form).headers["location"].rsplit("/", 1)[1]
    jobs = app.state.console.jobs
    _until(lambda: jobs.get(job_id).state == "running", "the job to start")
    assert "Cancel job" in admin.get(f"/jobs/{job_id}").text
    assert admin.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf}).status_code == 303
    _until(lambda: jobs.get(job_id).state == "cancelled", "the job to stop")
    assert "■ cancelled" in admin.get("/runs").text
    completed = run_names(console_ws)[CLS_TASK][0]
    r = admin.post(f"/runs/{completed}/resume", data={"csrf": csrf})
    assert r.status_code == 403 and "only an interrupted run can be resumed" in r.text


def _until(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def register(client: TestClient, csrf: str, app, run: str) -> int:
    """Register a run from its page (or find it registered by an earlier test); its version number."""
    r = client.post(f"/runs/{run}/register", data={"csrf": csrf})
    assert r.status_code == 303 or (r.status_code == 409 and "already registered" in r.text), r.text
    versions = app.state.console.registry().list_versions(CLS_TASK)
    return next(v.version for v in versions if v.lineage["run_dir"].endswith(run))


def test_register_promote_with_reason_and_roll_back(app, console_ws):
    admin, csrf = login(app, console_ws.admin_key)
    evaluated, plain = run_names(console_ws)[CLS_TASK][:2]
    passed, ungated = register(admin, csrf, app, evaluated), register(admin, csrf, app, plain)
    page = admin.get(f"/registry/{CLS_TASK}").text
    assert f"Promote version {ungated}" in page and evaluated in page and "✓ passed" in page
    registry = app.state.console.registry()
    assert admin.post(f"/registry/{CLS_TASK}/promote", data={"csrf": csrf, "version": str(passed)}).status_code == 303
    r = admin.post(f"/registry/{CLS_TASK}/promote", data={"csrf": csrf, "version": str(ungated), "reason": " "})
    assert r.status_code == 409 and "write why it must ship" in r.text and registry.production(CLS_TASK) == passed
    r = admin.post(f"/registry/{CLS_TASK}/promote", data={"csrf": csrf, "version": str(ungated), "reason": "console test"})
    assert r.status_code == 303 and registry.production(CLS_TASK) == ungated
    assert registry.get(f"{CLS_TASK}:{ungated}").tags["promotion_forced_reason"] == "console test"
    assert admin.post(f"/registry/{CLS_TASK}/rollback", data={"csrf": csrf, "reason": "back"}).status_code == 303
    assert registry.production(CLS_TASK) == passed
    history = admin.get(f"/registry/{CLS_TASK}").text
    assert "rollback" in history and "console test" in history and "(forced)" in history
    r = admin.post(f"/registry/{CHAT_TASK}/rollback", data={"csrf": csrf})
    assert r.status_code == 409 and "no earlier production version" in r.text


def test_playground_answers_land_in_the_feedback_store(app, console_ws, caplog):
    caplog.set_level(logging.DEBUG)
    reviewer, csrf = login(app, console_ws.reviewer_key)
    prompt = "secret-prompt-4711 How do I reset the Smart Plug?"
    r = reviewer.post("/playground", data={"csrf": csrf, "task": CHAT_TASK, "prompt": prompt})
    assert r.status_code == 303, r.text
    page = reviewer.get(r.headers["location"])
    assert prompt in page.text and page.text.count('name="completion_id"') == 3  # base, tuned and production
    ids = re.findall(r'name="completion_id" value="([^"]+)"', page.text)  # in that order
    back = re.search(r'name="back" value="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    r = reviewer.post(
        "/playground/feedback",
        data={"csrf": csrf, "completion_id": ids[1], "rating": "down", "correction": "Hold it 10 s.", "back": back},
    )
    assert r.status_code == 303 and f"rated={ids[1]}" in r.headers["location"]
    store = app.state.console.serve_state().feedback
    (fb,) = store.feedback_for(ids[1])
    assert fb.rating == 1 and fb.correction == "Hold it 10 s." and fb.key_id is not None
    assert store.completion(ids[0]).endpoint == "console"
    assert "secret-prompt-4711" not in caplog.text
    r = reviewer.post("/playground/feedback", data={"csrf": csrf, "completion_id": "nope", "rating": "up"})
    assert r.status_code == 403
    # the production answer (a registered version) is what the review queue takes
    form = {"csrf": csrf, "completion_id": ids[2], "rating": "down", "correction": "Hold it 10 s.", "back": back}
    assert reviewer.post("/playground/feedback", data=form).status_code == 303
    assert store.completion(ids[2]).served == f"{CHAT_TASK}:1"
    _review(reviewer, csrf)


def _review(reviewer: TestClient, csrf: str) -> None:
    """The playground's correction goes through the review queue: queued, edited, counted."""
    assert reviewer.post("/feedback/propose", data={"csrf": csrf, "task": CHAT_TASK}).status_code == 303
    page = reviewer.get(f"/feedback?task={CHAT_TASK}&state=pending").text
    assert "Hold it 10 s." in page and "Accounting for" in page
    item = int(re.search(r'id="item-(\d+)"', page).group(1))
    r = reviewer.post(f"/feedback/{item}/decide", data={"csrf": csrf, "task": CHAT_TASK, "action": "edit", "correction": " "})
    assert r.status_code == 409 and "needs the corrected answer" in r.text
    r = reviewer.post(
        f"/feedback/{item}/decide",
        data={"csrf": csrf, "task": CHAT_TASK, "action": "edit", "correction": "Hold the button for ten seconds."},
    )
    assert r.status_code == 303
    edited = reviewer.get(f"/feedback?task={CHAT_TASK}&state=edited").text
    assert f'id="item-{item}"' in edited and "Hold the button for ten seconds." in edited and "support (key" in edited
    r = reviewer.post(f"/feedback/{item + 1000}/decide", data={"csrf": csrf, "task": CHAT_TASK, "action": "reject"})
    assert r.status_code == 409


def test_ui_command_refuses_a_remote_address_without_the_flag(console_ws, monkeypatch):
    from tuneloom.cli import app as cli

    r = CliRunner().invoke(cli, ["ui", "-c", str(console_ws.config), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--allow-remote" in r.output
    started = []
    monkeypatch.setattr("tuneloom.ui.run_console", lambda project, host, port: started.append((host, port)))
    r = CliRunner().invoke(cli, ["ui", "-c", str(console_ws.config), "--host", "0.0.0.0", "--allow-remote", "--port", "9"])
    assert r.exit_code == 0 and "warning" in r.output and started == [("0.0.0.0", 9)]
    assert "Example: tuneloom ui" in CliRunner().invoke(cli, ["ui", "--help"]).output


def test_serve_mounts_the_console_when_configured(console_ws):
    from tuneloom.serve.app import create_app

    project = load_project(console_ws.config)
    settings = project.config.serve.model_copy(update={"console": True})
    with TestClient(create_app(project, settings), follow_redirects=False) as c:
        r = c.get("/console/runs")
        assert r.status_code == 303 and r.headers["location"] == "/console/login?next=/runs"
        assert 'action="/console/login"' in c.get("/console/login").text
    off = create_app(load_project(console_ws.config))
    assert TestClient(off).get("/console/login").status_code == 404


def test_playground_shows_the_retrieved_sources(console_ws, monkeypatch):
    """A task with a knowledge base: one search, the same passages in every side's prompt, the sources shown."""
    from tests.knowledge.rag_helpers import product_chunks
    from tuneloom.knowledge.records import Hit

    project = load_project(console_ws.config)
    chat = project.config.task(CHAT_TASK).model_copy(update={"knowledge": "handbook"})
    config = project.config.model_copy(update={"tasks": [chat if t.name == CHAT_TASK else t for t in project.config.tasks]})
    app = create_console(project.model_copy(update={"config": config}))
    hits = [Hit(chunk=c, score=2.0 - i) for i, c in enumerate(product_chunks()[:2])]
    searched = []

    class Index:
        def search(self, query: str, k: int, flt) -> list[Hit]:
            searched.append((query, flt.allowed_tags))
            return hits[:k]

        def close(self) -> None:
            pass

    monkeypatch.setattr("tuneloom.knowledge.open_index", lambda project, name: Index())
    reviewer, csrf = login(app, console_ws.reviewer_key)
    r = reviewer.post("/playground", data={"csrf": csrf, "task": CHAT_TASK, "prompt": "Is the Cam Outdoor waterproof?"})
    assert r.status_code == 200 and "Sources from handbook" in r.text and "products.md#1" in r.text
    assert searched == [("Is the Cam Outdoor waterproof?", None)]  # the reviewer key sees every tag
    from tuneloom.serve.auth import KeyStore, keys_path

    _, tagged_key = KeyStore(keys_path(console_ws.workspace)).create(["*"], "partner", ["billing"], ["reviewer"])
    tagged, tagged_csrf = login(app, tagged_key)
    tagged.post("/playground", data={"csrf": tagged_csrf, "task": CHAT_TASK, "prompt": "Invoices?"})
    assert searched[-1] == ("Invoices?", frozenset({"billing"}))  # a key sees only its tags' chunks, as on /v1
    ids = re.findall(r'name="completion_id" value="([^"]+)"', r.text)
    store = app.state.console.serve_state().feedback
    for cid in ids:
        messages = store.completion(cid).request["messages"]
        assert hits[0].chunk.text[:40] in json.dumps(messages, ensure_ascii=False)
    app.state.console.close()


def test_the_eval_page_shows_retrieval_and_held_out_feedback(app, console_ws, monkeypatch):
    """A task with a knowledge base: every side with and without retrieval, the deltas with intervals, answers
    with their sources; a run of the feedback loop: its score on held-out feedback."""
    from tuneloom.artifacts import Delta, RetrievalComparison, RetrievalExample
    from tuneloom.ui.routes import runs as run_routes

    sides = {s: {"token_f1": f, "groundedness": g} for s, f, g in (("base", 0.17, 0.15), ("tuned+retrieval", 0.29, 0.78))}
    example = RetrievalExample(
        id="q1",
        question="Can I get Care+ in France?",
        reference="Care+ is sold in the UK only.",
        answers={"base": "Yes.", "tuned+retrieval": "No, only in the UK."},
        token_f1={"base": 0.0, "tuned+retrieval": 0.6},
        sources=[{"n": 1, "chunk_id": "care.pdf#2", "doc_id": "care.pdf", "section": "Care+ > Where", "score": 0.8}],
        grounding="care.pdf#2",
        hit=True,
    )
    retrieval = RetrievalComparison(
        knowledge="acme-policies",
        top_k=2,
        n_examples=1,
        n_grounded=1,
        hit_rate=1.0,
        sides=sides,
        deltas={"tuned+retrieval vs tuned": {"token_f1": Delta(delta=0.12, low=0.01, high=0.2)}},
        examples=[example],
    )
    original = run_routes.run_view

    def with_retrieval(workspace, name):
        view = original(workspace, name)
        if view.eval is None:
            return view
        view.eval = view.eval.model_copy(update={"retrieval": retrieval})
        view.feedback_eval = view.eval.model_copy(update={"n_examples": 3})
        return view

    monkeypatch.setattr(run_routes, "run_view", with_retrieval)
    c, _ = login(app, console_ws.reviewer_key)
    page = c.get(f"/runs/{run_names(console_ws)[CLS_TASK][0]}/eval").text
    assert "With and without retrieval" in page and "acme-policies" in page and "hit rate 100%" in page
    assert "tuned+retrieval vs tuned" in page and "+0.1200 [+0.0100, +0.2000]" in page and "0.7800" in page
    assert "Care+ &gt; Where" in page and "grounds the reference" in page and "No, only in the UK." in page
    assert "On held-out feedback" in page and "3 corrections" in page
    runs = run_names(console_ws)
    compared = c.get(f"/compare?run={runs[CLS_TASK][0]}&run={runs[CHAT_TASK][0]}").text
    assert "token_f1, tuned+retrieval" in compared and "Δ vs without +0.1200, 95% [+0.0100, +0.2000]" in compared
    assert "dataset.version" in compared  # the two tasks' runs trained on different data
