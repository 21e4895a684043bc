"""The `llamacpp` backend: generation in managed llama.cpp processes (xllamacpp) on exported GGUFs.

Each base model is exported once to a GGUF (`serve.llamacpp_quant`, cached under
<workspace>/exports/) and served by its own process (`tuneloom.serve.llamacpp_worker`) on a loopback
port; each adapter becomes a LoRA GGUF loaded into that process and chosen per request, so several
adapters share one base. An adapter llama.cpp cannot apply at run time (DoRA, rsLoRA, embeddings...)
is merged into its own GGUF and process. A new adapter (a promotion) starts a new process with every
adapter, switches traffic to it once healthy and stops the old one when its requests are done. A
process that dies is restarted. Embeddings and classification stay on transformers.

Tuneloom's gateway stays in front (routes, keys, limits, feedback, metrics, chat templates: prompts
are rendered by Tuneloom and sent as token ids), so every backend answers the same requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloom.config import ServeConfig
from tuneloom.errors import TuneloomError
from tuneloom.serve.backends import Generation, TransformersBackend
from tuneloom.serve.engine import Event, SamplingParams
from tuneloom.serve.managed import ManagedEngineBackend
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import Target

log = logging.getLogger("tuneloom.serve")
_FINISH = {"limit": "length", "eos": "stop", "word": "stop"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    """One llama.cpp process: a base GGUF and its LoRA GGUFs (list index = llama.cpp adapter id)."""

    model: Path
    loras: list[Path]
    threads: int
    parallel: int
    ctx: int
    log_dir: Path
    port: int = field(default_factory=_free_port)
    in_flight: int = 0
    stopping: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 180.0) -> Worker:
        """Start the process and wait until llama.cpp answers /health; an error quotes its log."""
        import httpx2 as httpx

        from tuneloom.atomic import make_private_dirs

        make_private_dirs(self.log_dir)
        log_path = self.log_dir / f"llamacpp-{self.port}.log"
        command = [sys.executable, "-m", "tuneloom.serve.llamacpp_worker", "--model", str(self.model), "--port", str(self.port)]
        command += ["--threads", str(self.threads), "--parallel", str(self.parallel), "--ctx", str(self.ctx)]
        for lora in self.loras:
            command += ["--lora", str(lora)]
        env = {**os.environ, "OMP_WAIT_POLICY": "passive", "OMP_NUM_THREADS": str(self.threads)}
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.alive():
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop(0)
        tail = log_path.read_text(errors="replace")[-1500:]
        raise TuneloomError(f"llama.cpp did not start on {self.model.name} (log {log_path}):\n{tail}")

    def stop(self, grace_s: float) -> None:
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=max(grace_s, 1.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _safe(name: str) -> str:
    """A served name (`qa:3`) as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _stamp(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return hashlib.sha1("|".join(f"{folder.resolve()}:{p.name}:{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()[:12]


class LlamaCppBackend(ManagedEngineBackend):
    """Chat and text generation on llama.cpp processes; embeddings and classification on transformers."""

    name = "llamacpp"

    def __init__(self, settings: ServeConfig, metrics: ServeMetrics, encoders: TransformersBackend, workspace: Path) -> None:
        super().__init__(settings, metrics, encoders)
        self.exports = workspace / "exports"
        self.threads = settings.torch_threads or os.cpu_count() or 1
        self._workers: dict[Path, Worker] = {}  # served GGUF -> its current process
        self._routes: dict[tuple[Path, Path | None], tuple[Path, int | None]] = {}
        self._monitor = threading.Thread(target=self._watch, name="llamacpp-monitor", daemon=True)
        self._monitor.start()

    # -- files and processes (slow: called off the event loop, through `tokenizer`) -------------

    def _make_ready(self, target: Target) -> None:
        """Prepares the target's GGUFs and process on first use."""
        self._route(target)

    def _route(self, target: Target) -> tuple[Worker, int | None]:
        key = (target.base_path, target.adapter_path)
        with self._lock:
            if key in self._routes:
                model, lora = self._routes[key]
                return self._workers[model], lora
        with self._prepare_lock:
            if key not in self._routes:
                self._routes[key] = self._prepare(target)
        model, lora = self._routes[key]
        return self._workers[model], lora

    def _prepare(self, target: Target) -> tuple[Path, int | None]:
        """(served GGUF, LoRA id) for the target: exports what is missing, starts or extends a process."""
        from tuneloom.export.api import atomic_file, base_gguf, load_state
        from tuneloom.export.llama import write_model_gguf
        from tuneloom.export.lora import adapter_config, merge_reasons, write_lora_gguf

        quant = self.settings.llamacpp_quant
        if target.adapter_path is None:
            return self._ensure(base_gguf(self.exports, target.base_path, quant), None), None
        folder = target.adapter_path
        stamp = _stamp(folder)
        from safetensors import safe_open

        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as fh:
            reasons = merge_reasons(adapter_config(folder), list(fh.keys()))
        if reasons:
            log.info("llamacpp: serving %s merged (%s)", target.served, "; ".join(reasons))
            merged = self.exports / "serve" / f"{_safe(target.served)}-{stamp}-{quant}.gguf"
            if not merged.is_file():
                state, config = load_state(folder, target.base_path, merge=True)
                atomic_file(merged, lambda tmp: write_model_gguf(tmp, state, config, target.base_path, quant, target.served))
            return self._ensure(merged, None), None
        base = base_gguf(self.exports, target.base_path, quant)
        lora = self.exports / "serve" / f"{_safe(target.served)}-{stamp}-lora.gguf"
        if not lora.is_file():
            config = json.loads((target.base_path / "config.json").read_text(encoding="utf-8"))
            atomic_file(lora, lambda tmp: write_lora_gguf(tmp, folder, config, target.served))
        return self._ensure(base, lora), self._workers[base].loras.index(lora)

    def _new_worker(self, model: Path, loras: list[Path]) -> Worker:
        limits = self.settings.limits
        ctx = limits.max_prompt_tokens + limits.max_tokens
        return Worker(model, loras, self.threads, self.settings.max_batch_size, ctx, self.exports / "serve" / "logs")

    def _ensure(self, model: Path, lora: Path | None) -> Path:
        """A healthy process for `model` holding `lora`; a new adapter swaps in a new process (old one drains)."""
        with self._lock:
            current = self._workers.get(model)
        if current is not None and (lora is None or lora in current.loras):
            return model
        loras = [*(current.loras if current else []), *([lora] if lora else [])]
        fresh = self._new_worker(model, loras).start()
        with self._lock:
            self._workers[model] = fresh
        if current is not None:
            threading.Thread(target=self._retire, args=(current,), daemon=True).start()
        return model

    def _retire(self, worker: Worker) -> None:
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while worker.in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop(5)

    def _watch(self) -> None:
        """Restart a process that died (crash, OOM kill) with the same model and adapters."""
        while not self._closed.wait(0.5):
            with self._lock:
                dead = [(m, w) for m, w in self._workers.items() if not w.alive() and not w.stopping]
            for model, worker in dead:
                code = worker.proc.returncode if worker.proc else None
                log.warning("llamacpp: the engine for %s exited (code %s); restarting it", model.name, code)
                try:
                    fresh = self._new_worker(model, worker.loras).start()
                except TuneloomError:
                    log.exception("llamacpp: restart failed; trying again")
                    continue
                with self._lock:
                    if self._workers.get(model) is worker:
                        self._workers[model] = fresh
                    else:
                        fresh.stop(0)

    # -- requests -------------------------------------------------------------------------------

    def start(self, target: Target, prompt_ids: list[int], params: SamplingParams, n: int, deadline: float) -> Generation:
        worker, lora = self._route(target)  # prepared by `tokenizer`: a dictionary lookup here
        with self._lock:
            self._admit(n)
            worker.in_flight += n
        adapters = [{"id": i, "scale": 1.0 if i == lora else 0.0} for i in range(len(worker.loras))]
        return self._fan_out(
            n,
            lambda index, generation: self._pump(
                worker, self._body(prompt_ids, params, index, adapters), index, generation, deadline
            ),
        )

    @staticmethod
    def _body(prompt_ids: list[int], params: SamplingParams, index: int, adapters: list[dict[str, Any]]) -> dict[str, Any]:
        """llama.cpp /completion request: only temperature and top_p sample, as on the transformers backend."""
        body: dict[str, Any] = {
            "prompt": prompt_ids,
            "n_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "stop": params.stop,
            "stream": True,
            "cache_prompt": True,
            "lora": adapters,
        }
        if params.seed is not None:
            body["seed"] = params.seed + index
        return body

    async def _pump(self, worker: Worker, body: dict[str, Any], index: int, generation: Generation, deadline: float) -> None:
        """Stream one choice from llama.cpp into `generation`; the last event says why it ended."""
        import httpx2 as httpx

        tokens, finish = 0, "error"
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                async with (
                    httpx.AsyncClient(timeout=None) as client,
                    client.stream("POST", worker.url + "/completion", json=body) as response,
                ):
                    if response.status_code != 200:
                        log.error("llamacpp: /completion answered %s: %s", response.status_code, (await response.aread())[:500])
                        return
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        chunk = json.loads(line[6:])
                        tokens = int(chunk.get("tokens_predicted", tokens + 1))
                        if chunk.get("stop"):
                            finish = _FINISH.get(chunk.get("stop_type", ""), "stop")
                            if chunk.get("content"):
                                generation.emit(Event(index, chunk["content"], None, tokens))
                            return
                        generation.emit(Event(index, chunk.get("content", ""), None, tokens))
        except TimeoutError:
            finish = "timeout"
        except asyncio.CancelledError:
            finish = "cancelled"
        except httpx.TransportError as exc:
            log.error("llamacpp: lost the engine for %s mid-request: %s", worker.model.name, exc)
        finally:
            with self._lock:
                self._in_flight -= 1
                worker.in_flight -= 1
            generation.emit(Event(index, "", finish, tokens))

    def close(self, grace_s: float) -> None:
        self._closed.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop(grace_s)
        self.encoders.close(grace_s)
