"""Server-side jobs: `tuneloom` commands the console runs in their own processes, recorded in the workspace.

    console/jobs/<id>/job.json   JobRecord (state, pids, exit code)
    console/jobs/<id>/log.txt    the command's output

`launch` starts `python -m tuneloom.ui.jobrun <job folder>` in a new session; that runner starts the
command, waits for it and records how it ended. Neither depends on the console process, so a refresh,
a second tab, a closed laptop or a restarted console loses nothing: the job keeps running and its
record and log stay on disk. A record left `running` by a runner that no longer exists (the machine
rebooted) reads as `interrupted`.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from tuneloom.artifacts import JobRecord, read_job, write_job
from tuneloom.errors import TuneloomError

TERMINAL = ("completed", "failed", "cancelled", "interrupted")
_JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
CANCEL_MARK = "cancel-requested"
QUEUED_LIMIT_S = 60.0  # a runner that has not started its command by then never will


class JobError(TuneloomError):
    """A job that does not exist, or cannot be cancelled."""


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class JobRunner:
    """The jobs of one workspace."""

    def __init__(self, workspace: Path) -> None:
        self.root = Path(workspace) / "console" / "jobs"

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):  # never a path: ids come from URLs
            raise JobError(f"no job '{job_id}'")
        path = self.root / job_id
        if not (path / "job.json").is_file():
            raise JobError(f"no job '{job_id}'; the Runs page lists the jobs")
        return path

    def get(self, job_id: str) -> JobRecord:
        """The job as recorded; `running` without a live runner reads as `interrupted`."""
        job = read_job(self.job_dir(job_id))
        never_started = job.state == "queued" and time.time() - _epoch(job.created) > QUEUED_LIMIT_S
        if never_started or (job.state == "running" and not _alive(job.runner_pid)):
            return job.model_copy(update={"state": "interrupted"})
        return job

    def all(self) -> list[JobRecord]:
        """Every job, newest first."""
        if not self.root.is_dir():
            return []
        ids = sorted((p.name for p in self.root.iterdir() if _JOB_ID.match(p.name)), reverse=True)
        return [self.get(i) for i in ids if (self.root / i / "job.json").is_file()]

    def log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """The log from byte `offset`, and the offset after it."""
        path = self.job_dir(job_id) / "log.txt"
        if not path.is_file():
            return "", offset
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return data.decode("utf-8", errors="replace"), offset + len(data)

    def launch(
        self, kind: str, argv: list[str], task: str | None = None, run: str | None = None, user: str | None = None
    ) -> JobRecord:
        """Record a job and start its runner; returns the record (state `queued` until the runner starts it)."""
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        job_dir = self.root / job_id
        job_dir.mkdir(parents=True, mode=0o700)
        job = JobRecord(id=job_id, kind=kind, argv=argv, task=task, run=run, user=user)
        write_job(job_dir, job)
        with open(job_dir / "runner.txt", "wb") as out:  # the runner's own errors, if any
            proc = subprocess.Popen(
                [sys.executable, "-m", "tuneloom.ui.jobrun", str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the console; signals to the console do not reach it
                env=job_env(),
            )
        return job.model_copy(update={"runner_pid": proc.pid})  # the runner records its pid itself

    def cancel(self, job_id: str) -> None:
        """Ask the command to stop (SIGTERM to its process group: training saves its state and marks the run interrupted)."""
        job = self.get(job_id)
        if job.state in TERMINAL:
            raise JobError(f"job {job_id} already ended ({job.state})")
        (self.job_dir(job_id) / CANCEL_MARK).touch()
        if job.pid is not None and _alive(job.pid):
            os.killpg(job.pid, signal.SIGTERM)


def job_env() -> dict[str, str]:
    """The console's environment, with unbuffered output and wide, colourless logs."""
    return dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160", NO_COLOR="1", TERM="dumb")


def _epoch(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
