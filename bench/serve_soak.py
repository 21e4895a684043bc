"""Soak test for `tuneloom serve`'s admission control: twice as many clients as the server admits.

    python bench/serve_soak.py [--duration 60] [--max-requests 2000] [--max-tokens 4]

A tiny random Llama (SmolLM2's tokenizer, 2 layers) is served by `tuneloom serve` started on
127.0.0.1 as a subprocess, with `max_batch_size` 4, `max_queue` 4 and `request_timeout_s` 10.
Closed-loop clients, twice the batch plus queue (16), send chat requests (max_tokens 4) until the
duration or the request budget is spent; a client that gets 429 waits 0.1 s (not the full
Retry-After, to keep the pressure on). Prints one JSON line: requests, 2xx, 429, 5xx, other,
429s without Retry-After, and p50/p95 latency of the admitted requests against the timeout.
The pass criteria: 0 5xx, every 429 with Retry-After, p95 under the timeout.
tests/serve/test_robustness.py runs the same `soak` for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

SETTINGS = {"max_batch_size": 4, "max_queue": 4, "request_timeout_s": 10.0, "torch_threads": 1}
PROMPTS = ["How do I reset my Doorbell Pro?", "Is the Motion Sensor waterproof?", "How much does the Home Hub cost?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(project_file: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`tuneloom serve` in a subprocess on 127.0.0.1:port, this checkout's sources first, stderr to `log`."""
    import tuneloom

    src = str(Path(tuneloom.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", "from tuneloom.cli import app; app()", "serve", "-c", str(project_file)]
    with open(log, "ab") as stderr:
        return subprocess.Popen([*command, "--port", str(port), *extra], stdout=stderr, stderr=stderr, env=env)


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    """Until GET /ready answers 200 (RuntimeError if the server exits or is not ready in time)."""
    import httpx2

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx2.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the server was not ready within {timeout_s} s")


def soak(
    url: str, model: str, *, clients: int, duration_s: float, max_requests: int, max_tokens: int, key: str | None = None
) -> list[dict[str, Any]]:
    """Closed-loop chat clients until `duration_s` or `max_requests`; one record per request."""
    import httpx2

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s

    def client(worker: int) -> None:
        with httpx2.Client(base_url=url, headers=headers, timeout=120) as http:
            for i in range(max_requests):
                with lock:
                    if len(records) >= max_requests or time.monotonic() > stop_at:
                        return
                body = {"model": model, "messages": [{"role": "user", "content": PROMPTS[(worker + i) % len(PROMPTS)]}]}
                started = time.monotonic()
                try:
                    r = http.post("/v1/chat/completions", json={**body, "max_tokens": max_tokens})
                    status, retry_after = r.status_code, r.headers.get("Retry-After")
                except httpx2.HTTPError as exc:
                    status, retry_after = 0, f"{exc.__class__.__name__}"
                with lock:
                    records.append({"status": status, "s": time.monotonic() - started, "retry_after": retry_after})
                if status == 429:
                    time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records


def figures(records: list[dict[str, Any]], timeout_s: float, clients: int, admitted_at_once: int) -> dict[str, Any]:
    """The soak's figures: counts by outcome, and latency percentiles of the admitted (2xx) requests."""
    ok = sorted(r["s"] for r in records if 200 <= r["status"] < 300)
    busy = [r for r in records if r["status"] == 429]

    def pct(q: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(q * len(ok)))], 3) if ok else None

    return {
        "bench": "serve_soak",
        "requests": len(records),
        "2xx": len(ok),
        "429": len(busy),
        "5xx": sum(1 for r in records if r["status"] >= 500),
        "other": sum(1 for r in records if not (200 <= r["status"] < 300 or r["status"] == 429 or r["status"] >= 500)),
        "429_without_retry_after": sum(1 for r in busy if not r["retry_after"]),
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "timeout_s": timeout_s,
        "clients": clients,
        "admitted_at_once": admitted_at_once,
    }


def tiny_llama(out: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template (as tests/conftest.py makes it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tuneloom.catalog import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most)")
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneloom-serve-soak-") as tmp:
        root = Path(tmp)
        model = tiny_llama(root / "tiny")
        project = {
            "project": "serve-soak",
            "tasks": [
                {
                    "name": "qa",
                    "type": "chat_sft",
                    "model": "smollm2-135m-instruct",
                    "data": {"sources": [{"path": "qa.jsonl"}], "columns": {"prompt": "q", "response": "a"}},
                }
            ],
            "serve": {**SETTINGS, "base_models": [], "models": [{"name": "tiny", "path": str(model)}]},
        }
        (root / "tuneloom.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        port = free_port()
        server = start_server(root / "tuneloom.yaml", port, root / "server.log", "--no-auth")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server)
            soak(url, "tiny", clients=1, duration_s=30, max_requests=2, max_tokens=args.max_tokens)  # loads the model
            clients = 2 * (SETTINGS["max_batch_size"] + SETTINGS["max_queue"])
            records = soak(
                url,
                "tiny",
                clients=int(clients),
                duration_s=args.duration,
                max_requests=args.max_requests,
                max_tokens=args.max_tokens,
            )
        finally:
            server.terminate()
            server.wait(60)
    admitted = int(SETTINGS["max_batch_size"] + SETTINGS["max_queue"])
    print(json.dumps(figures(records, float(SETTINGS["request_timeout_s"]), int(clients), admitted)))


if __name__ == "__main__":
    main()
