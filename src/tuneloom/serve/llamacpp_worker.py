"""The managed llama.cpp process of the `llamacpp` serve backend: xllamacpp's HTTP server on loopback.

    python -m tuneloom.serve.llamacpp_worker --model base.gguf --port 8123 --threads 2 --parallel 8 \
        --ctx 2560 [--lora a.gguf --lora b.gguf]

Runs until SIGTERM / SIGINT, or until its parent (the Tuneloom server) is gone. Thread settings are
made before llama.cpp starts its OpenMP runtime: idle threads sleep (OMP_WAIT_POLICY=passive) rather
than spin, which on a CPU shared with other processes is the difference between full speed and a
collapse to a few tokens per second.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tuneloom.serve.llamacpp_worker")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--lora", type=Path, action="append", default=[])
    args = parser.parse_args(argv)

    from tuneloom.export.verify import quiet_threads, server_params

    quiet_threads(args.threads)
    import xllamacpp

    params = server_params(args.model, args.lora, args.threads, args.ctx, args.parallel)
    params.port = args.port
    params.verbosity = 1  # warnings and errors only: the request log would hold prompts
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    server = xllamacpp.Server(params)
    print(f"ready {server.listening_address}", flush=True)
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the Tuneloom server died without stopping us
            break
    del server


if __name__ == "__main__":
    main()
