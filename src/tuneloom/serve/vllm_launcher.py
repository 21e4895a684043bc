"""Starts vLLM's OpenAI-compatible server in vLLM's own environment and stops it with its parent.

    /path/to/vllm-env/bin/python .../tuneloom/serve/vllm_launcher.py --model BASE --port 8123 [vLLM arguments]

Run by file path with vLLM's interpreter (the `vllm` serve backend does this), so it imports only the
standard library and vLLM: Tuneloom is not installed there. It runs `vllm serve` (vLLM's own command
line) in this same process (its pid is the server's), and a watcher thread sends this process SIGTERM when
the Tuneloom server that started it is gone (killed without stopping it): vLLM's own SIGTERM
handling then stops its engine processes too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path


def _watch(parent: int) -> None:
    """SIGTERM to this process once `parent` is no longer its parent (it died; we were re-parented)."""
    while os.getppid() == parent:
        threading.Event().wait(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    here = Path(__file__).resolve().parent
    # Run by path, Python put this folder first on sys.path: its modules (metrics.py, engine.py...) would
    # shadow the packages vLLM imports.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    threading.Thread(target=_watch, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    from vllm.entrypoints.cli.main import main as vllm_main  # what the `vllm` command runs

    sys.argv = ["vllm", "serve", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
