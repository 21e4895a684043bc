"""Fixtures for the knowledge-base tests: a real PostgreSQL server with pgvector.

TUNELOOM_TEST_PGVECTOR_URL names a server to use (CI elsewhere); otherwise the `pgserver` wheel (a dev
dependency bundling PostgreSQL 16 with pgvector) starts one in a temporary folder for the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A PostgreSQL URL whose server has pgvector available.

    The data folder is a fresh directory under the system temp dir, not pytest's: run as root, pgserver runs
    PostgreSQL as its own `pgserver` user and opens every parent folder to it, which pytest's private
    (and concurrently re-chmodded) base folder must not be.
    """
    url = os.environ.get("TUNELOOM_TEST_PGVECTOR_URL")
    if url:
        yield url
        return
    try:
        import pgserver
    except ImportError:
        pytest.skip("neither TUNELOOM_TEST_PGVECTOR_URL nor the pgserver wheel (pip install -e '.[dev]') is available")
    data = Path(tempfile.mkdtemp(prefix="tuneloom-pgvector-"))
    server = pgserver.get_server(data, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)
