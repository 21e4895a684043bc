"""A prepared two-task project whose feedback store holds served answers, and helpers to rate them.

`store_url` runs each test on SQLite, and again on PostgreSQL when TUNELOOM_TEST_POSTGRES_URL is set
(CI's .ci/run starts one); the PostgreSQL tables are emptied first.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CHAT_TASK, CLS_TASK, write_project
from tuneloom.config import Project, load_project
from tuneloom.serve.feedback import Base, FeedbackStore

POSTGRES = os.environ.get("TUNELOOM_TEST_POSTGRES_URL")
RULES = [{"name": "trusted", "key_names": ["support-leads"], "tags": ["reviewed"]}]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None  # the workspace default
    if not POSTGRES:
        pytest.skip("TUNELOOM_TEST_POSTGRES_URL is not set (CI's .ci/run starts PostgreSQL and sets it)")
    import tuneloom.feedback.store  # noqa: F401  # registers the review table on the shared metadata

    store = FeedbackStore(POSTGRES)
    Base.metadata.drop_all(store.engine)
    Base.metadata.create_all(store.engine)
    store.close()
    return POSTGRES


@functools.cache
def _prepared() -> Path:
    """The project with both tasks' data prepared, once per test session (tests copy it)."""
    from tuneloom.data.prepare import prepare_dataset

    root = Path(tempfile.mkdtemp(prefix="tuneloom-feedback-project-"))
    path = write_project(root, "smollm2-135m-instruct", "all-minilm-l6-v2")
    config = yaml.safe_load(path.read_text())
    for task in config["tasks"]:
        task["data"]["token_stats"] = False
    path.write_text(yaml.safe_dump(config))
    project = load_project(path)
    for name in (CHAT_TASK, CLS_TASK):
        prepare_dataset(project, name)
    return root


def make_project(root: Path, store_url: str | None, redact: bool = False, **feedback: Any) -> Project:
    """A copy of the prepared two-task project with `feedback` settings (and redaction of feedback rows)."""
    shutil.copytree(_prepared(), root, dirs_exist_ok=True)
    path = root / "tuneloom.yaml"
    config = yaml.safe_load(path.read_text())
    for task in config["tasks"]:
        task["feedback"] = {"auto_accept": RULES, **feedback}
        task["data"]["redact"] = {"enabled": redact}  # changes no prepared data: LATEST stays the version above
    if store_url:
        config["serve"] = {"feedback_db": store_url}
    path.write_text(yaml.safe_dump(config))
    return load_project(path)


@pytest.fixture
def project(tmp_path: Path, store_url: str | None) -> Project:
    return make_project(tmp_path, store_url)


def open_store(project: Project) -> FeedbackStore:
    from tuneloom.feedback.store import open_store as opened

    return opened(project)


def chat_answer(store: FeedbackStore, question: str, answer: str, *, version: int = 1, **extra: Any) -> str:
    """Store a chat answer as the server does; returns its completion id."""
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    response: dict[str, Any] = {"choices": [answer], **extra}
    store.record_completion(
        id=cid,
        endpoint="chat.completion",
        model=f"{CHAT_TASK}@production",
        served=f"{CHAT_TASK}:{version}",
        key_id=None,
        request={"messages": [{"role": "user", "content": question}], "temperature": 0.0},
        response=response,
        finish_reason="stop",
        prompt_tokens=10,
        completion_tokens=5,
        latency_ms=100 * version,
    )
    return cid


def classify_answer(store: FeedbackStore, texts: list[str], labels: list[str], *, version: int = 1) -> str:
    cid = f"clf-{uuid.uuid4().hex}"
    store.record_completion(
        id=cid,
        endpoint="classification",
        model=f"{CLS_TASK}:{version}",
        served=f"{CLS_TASK}:{version}",
        key_id=None,
        request={"input": texts},
        response={"labels": labels},
        finish_reason=None,
        prompt_tokens=10,
        completion_tokens=0,
        latency_ms=20,
    )
    return cid


def rate(
    store: FeedbackStore,
    cid: str,
    rating: str | int,
    correction: str | None = None,
    tags: list[str] | None = None,
    key: str | None = None,
) -> int:
    found = store.record_feedback(cid, rating, correction, tags or [], key)
    assert found is not None
    return found
