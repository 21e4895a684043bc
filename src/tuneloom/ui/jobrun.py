"""`python -m tuneloom.ui.jobrun JOB_DIR`: run one console job's command and record how it ended.

Started by `JobRunner.launch` in a session of its own; the command gets a process group of its own
too, so cancelling it (SIGTERM to that group) leaves this runner alive to record `cancelled`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tuneloom.artifacts import read_job, write_job
from tuneloom.ui.jobs import CANCEL_MARK, job_env


def run_job(job_dir: Path) -> int:
    """Run the job's command with its output in log.txt; returns the command's exit code."""
    job = read_job(job_dir)
    with open(job_dir / "log.txt", "ab") as log:
        log.write(f"$ tuneloom {' '.join(job.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneloom.cli", *job.argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=job_env(),
        )
        write_job(job_dir, job.model_copy(update={"state": "running", "runner_pid": os.getpid(), "pid": proc.pid}))
        code = proc.wait()
    if (job_dir / CANCEL_MARK).exists():
        state = "cancelled"
    else:
        state = "completed" if code == 0 else "failed"
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_job(job_dir, read_job(job_dir).model_copy(update={"state": state, "returncode": code, "finished": finished}))
    return code


if __name__ == "__main__":  # pragma: no cover - the runner process
    sys.exit(0 if run_job(Path(sys.argv[1])) == 0 else 1)
