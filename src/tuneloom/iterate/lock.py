"""One `tuneloom iterate` per task at a time: an exclusive lock on a file in the workspace.

`fcntl.flock` is released by the kernel when its process dies, even by kill -9, so a crashed run
never leaves a stale lock behind. (POSIX only, like the rest of the workspace's guarantees.)
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneloom.artifacts import iterate_dir
from tuneloom.atomic import PRIVATE_FILE, make_private_dirs
from tuneloom.errors import TuneloomError


class IterateBusy(TuneloomError):
    """Another `tuneloom iterate` holds the task's lock."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


@contextmanager
def task_lock(workspace: Path, task: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the task's iterate lock for the block; wait up to `wait_s` for it, then refuse with IterateBusy."""
    folder = iterate_dir(workspace, task)
    make_private_dirs(folder)
    path = folder / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IterateBusy(
                        f"another `tuneloom iterate` is running for task '{task}'{_holder(path)}; "
                        "wait for it to finish, or pass --wait SECONDS to queue behind it"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock
