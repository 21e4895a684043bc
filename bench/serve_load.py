"""Load benchmark for `tuneloom serve`: SmolLM2-135M-Instruct with two LoRA adapters, against a naive baseline.

    python bench/serve_load.py [--requests-per-level 4,8,16,32] [--max-tokens 32] [--threads 1]

Ours: `tuneloom serve` started on 127.0.0.1 as a subprocess with its default CPU path (transformers
engine, int8 weight-only decoding), driven by concurrent streaming clients (the official `openai`
client) at concurrency 1, 4, 8 and 16, requests alternating between the two adapters. The same server
with `serve.decode_weights: model` (bf16 decoding) runs as `transformers-bf16`. Baseline, in the same run: the same prompts and max_tokens answered one request at a time
with plain transformers `generate` on a PeftModel holding both adapters (`set_adapter` per request);
one at a time, its throughput does not depend on concurrency, so each level's baseline answers that
level's first 8 requests. Both sides use `--threads` torch threads (default 1: with other jobs on
the CPU, 2 threads per process spin against each other and run about 10 times slower).
The adapters are random LoRA weights with non-zero B (so the two adapters answer differently), made
in a temporary folder. `--backends llamacpp` (the default) drives the same server again with
`--backend llamacpp` (the same weights exported to GGUF, adapters as LoRA GGUFs, `--threads` threads
per llama.cpp process); `--backends vllm --vllm-python .venv-vllm/bin/python` drives vLLM's server
(`make vllm-env`; the same bf16 weights, adapters loaded into it at run time). Each server's peak
resident memory (its process tree, sampled) and its time to first token on a ~100-token prompt at
concurrency 1 are measured too. Prints as its last line one JSON
object (tokens/s per level for each, ratio_at_8, ours_over_<backend> per level, latencies at
concurrency 8, TTFT, peak memory, failed requests).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

LEVELS = (1, 4, 8, 16)
PROMPTS = [
    "How do I reset my Doorbell Pro?",
    "What is the warranty on the Smart Plug?",
    "Can I return the Thermostat after 30 days?",
    "Does the Cam Outdoor work without Wi-Fi?",
    "How much does the Home Hub cost?",
    "Is the Motion Sensor waterproof?",
    "Where is the serial number of my camera?",
    "Can two people control the thermostat?",
    "My hub is offline, what now?",
    "Do you ship to France?",
    "How do I cancel my Protect subscription?",
    "Why was I charged twice this month?",
]


LONG_PROMPT = (
    "I bought a Doorbell Pro and a Home Hub from your online shop three weeks ago. The doorbell worked for two "
    "days, then it stopped ringing the chime and the app now says the device is offline even though the hub is "
    "online and my Wi-Fi is fine. I have already restarted the router and the hub. Can I get a replacement, or "
    "should I return it for a refund, and who pays the postage?"
)
VARIANTS = {  # label -> (serve backend, serve settings changed for it)
    "transformers": ("transformers", {}),
    "transformers-bf16": ("transformers", {"decode_weights": "model"}),
    "llamacpp": ("llamacpp", {}),
    "vllm": ("vllm", {}),  # needs vLLM's environment: --vllm-python (make vllm-env)
}


class PeakMemory:
    """Largest resident set of a process and its children (llama.cpp workers), sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                continue

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return round(self.peak / 2**20)


def make_adapters(base: Path, out: Path) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(base),
            LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        )
        model.save_pretrained(out / f"adapter-{seed}")
        paths.append(out / f"adapter-{seed}")
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def drive(url: str, key: str, jobs: list[tuple[str, str]], concurrency: int, max_tokens: int) -> dict:
    """Send `jobs` (model, prompt) with `concurrency` streaming clients; tokens/s over the wall time."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300)
    results: list[dict] = []
    lock = threading.Lock()

    def one(job: tuple[str, str]) -> None:
        model, prompt = job
        started, first = time.perf_counter(), None
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            tokens = 0
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
            row = {
                "ok": True,
                "tokens": tokens,
                "ms": (time.perf_counter() - started) * 1000,
                "ttft_ms": ((first or time.perf_counter()) - started) * 1000,
            }
        except Exception as exc:  # counted as failed; the JSON says how many
            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        with lock:
            results.append(row)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, jobs))
    wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    errors = sorted({r["error"] for r in results if not r["ok"]})
    return {
        "requests": len(jobs),
        "failed": len(results) - len(ok),
        "tokens": sum(r["tokens"] for r in ok),
        "seconds": round(wall, 2),
        "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1),
        "p50_ms": round(percentile([r["ms"] for r in ok], 0.5)),
        "p95_ms": round(percentile([r["ms"] for r in ok], 0.95)),
        "ttft_p50_ms": round(percentile([r["ttft_ms"] for r in ok], 0.5)),
        **({"errors": errors[:3]} if errors else {}),
    }


def baseline(base: Path, adapters: list[Path], jobs_by_level: dict[int, list[tuple[str, str]]], max_tokens: int) -> dict:
    """One request at a time, plain `generate` with the request's adapter, bf16 like the server here."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloom.train.common import choose_precision

    dtype = torch.bfloat16 if choose_precision("auto") == "bf16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=dtype), str(adapters[0]), adapter_name="ad-a"
    ).eval()
    model.load_adapter(str(adapters[1]), adapter_name="ad-b")
    out = {}
    for level, jobs in jobs_by_level.items():
        tokens, latencies, started = 0, [], time.perf_counter()
        for model_name, prompt in jobs:
            t0 = time.perf_counter()
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            model.set_adapter(model_name)
            with torch.inference_mode():
                gen = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
            tokens += int((gen[0, ids["input_ids"].shape[1] :] != tokenizer.eos_token_id).sum())
            latencies.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
        out[str(level)] = {
            "requests": len(jobs),
            "tokens": tokens,
            "seconds": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 1),
            "p50_ms": round(percentile(latencies, 0.5)),
        }
        print(f"baseline c={level}: {out[str(level)]}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests-per-level", default="4,8,16,32", help="Requests at concurrency 1,4,8,16.")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and baseline alike.")
    parser.add_argument(
        "--backends",
        default="transformers-bf16,llamacpp",
        help=f"Other servers to drive the same way, comma-separated ('' for none): {', '.join(list(VARIANTS)[1:])}.",
    )
    parser.add_argument(
        "--vllm-python", default=None, help="vllm backend: the Python of vLLM's environment (serve.vllm_python; make vllm-env)."
    )
    args = parser.parse_args()
    # The naive baseline runs in this process: its idle OpenMP threads sleep, as the servers' do (set before torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    counts = [int(x) for x in args.requests_per_level.split(",")]
    if len(counts) != len(LEVELS):
        parser.error(f"--requests-per-level takes {len(LEVELS)} numbers")

    from tuneloom.catalog import resolve_model
    from tuneloom.serve.auth import KeyStore, keys_path

    base = resolve_model("smollm2-135m-instruct")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tuneloom-serve-bench-") as tmp:
        root = Path(tmp)
        adapters = make_adapters(base, root)
        project = {
            "project": "serve-bench",
            "tasks": [
                {
                    "name": "qa",
                    "type": "chat_sft",
                    "model": "smollm2-135m-instruct",
                    "data": {"sources": [{"path": "qa.jsonl"}], "columns": {"prompt": "q", "response": "a"}},
                }
            ],
            "serve": {
                "models": [
                    {"name": "ad-a", "path": str(adapters[0]), "base": "smollm2-135m-instruct"},
                    {"name": "ad-b", "path": str(adapters[1]), "base": "smollm2-135m-instruct"},
                ],
                "max_batch_size": 16,
                "max_queue": 64,
                "torch_threads": args.threads,
                "limits": {"max_tokens": args.max_tokens},
                **({"vllm_python": args.vllm_python} if args.vllm_python else {}),
            },
        }
        (root / "tuneloom.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        _, key = KeyStore(keys_path(root / "workspace")).create(["*"], "bench")
        jobs_by_level = {
            level: [("ad-a" if i % 2 == 0 else "ad-b", PROMPTS[i % len(PROMPTS)]) for i in range(n)]
            for level, n in zip(LEVELS, counts)
        }

        ours, batch_sizes, extra = serve_levels(root, "transformers", key, jobs_by_level, args.max_tokens)
        probes = {"transformers": extra}
        others = {}
        for label in [b for b in args.backends.split(",") if b]:
            if label not in VARIANTS:
                parser.error(f"--backends: unknown '{label}'; choose from {', '.join(VARIANTS)}")
            others[label], _, probes[label] = serve_levels(root, label, key, jobs_by_level, args.max_tokens)
        base_results = baseline(base, adapters, {level: jobs[:8] for level, jobs in jobs_by_level.items()}, args.max_tokens)

    at8 = ours["8"]
    summary = {
        "bench": "serve_load",
        "model": "smollm2-135m-instruct",
        "adapters": 2,
        "max_tokens": args.max_tokens,
        "torch_threads": args.threads,
        "ours_tokens_per_s": {k: v["tokens_per_s"] for k, v in ours.items()},
        "baseline_tokens_per_s": {k: v["tokens_per_s"] for k, v in base_results.items()},
        "ratio_at_8": round(at8["tokens_per_s"] / base_results["8"]["tokens_per_s"], 2),
        "p50_ms": at8["p50_ms"],
        "p95_ms": at8["p95_ms"],
        "ttft_p50_ms": at8["ttft_p50_ms"],
        "failed": sum(v["failed"] for v in ours.values()),
        **{f"{b}_tokens_per_s": {k: v["tokens_per_s"] for k, v in r.items()} for b, r in others.items()},
        **{
            f"ours_over_{b}": {k: round(ours[k]["tokens_per_s"] / max(v["tokens_per_s"], 1e-9), 2) for k, v in r.items()}
            for b, r in others.items()
        },
        "failed_other_backends": {b: sum(v["failed"] for v in r.values()) for b, r in others.items()},
        "ttft_p50_ms_100_token_prompt": {b: p["ttft_p50_ms"] for b, p in probes.items()},
        "peak_memory_mb": {b: p["peak_memory_mb"] for b, p in probes.items()},
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "mean_batch_size": _mean_batch(batch_sizes),
        "ours": ours,
        "baseline": base_results,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))


def serve_levels(
    root: Path, label: str, key: str, jobs_by_level: dict[int, list[tuple[str, str]]], max_tokens: int
) -> tuple[dict[str, dict], list[str], dict]:
    """The server of VARIANTS[label] driven at every level: (results per level, batch-size metric lines,
    {ttft_p50_ms on the long prompt at concurrency 1, peak_memory_mb})."""
    import httpx2

    backend, changes = VARIANTS[label]
    project = yaml.safe_load((root / "tuneloom.yaml").read_text())
    project["serve"].update(changes)
    (root / f"{label}.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    port = free_port()
    tuneloom = Path(sys.executable).with_name("tuneloom")
    server = subprocess.Popen(
        [str(tuneloom), "serve", "-c", str(root / f"{label}.yaml"), "--port", str(port), "--backend", backend],
        stdout=subprocess.DEVNULL,
        stderr=open(root / f"server-{label}.log", "w"),
    )
    memory = PeakMemory(server.pid)
    results: dict[str, dict] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx2.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.5)
        drive(url, key, [("ad-a", "hi"), ("ad-b", "hi")], 2, 4)  # warm-up: loads the base model and both adapters
        for level, jobs in jobs_by_level.items():
            results[str(level)] = drive(url, key, jobs, level, max_tokens)
            print(f"{label} c={level}: {results[str(level)]}", file=sys.stderr, flush=True)
        probe = drive(url, key, [("ad-a", LONG_PROMPT), ("ad-b", LONG_PROMPT)] * 2, 1, 8)
        batch = httpx2.get(url + "/metrics").text
        extra = {"ttft_p50_ms": probe["ttft_p50_ms"], "peak_memory_mb": memory.stop()}
        print(f"{label} long prompt: {probe}, peak {extra['peak_memory_mb']} MiB", file=sys.stderr, flush=True)
        return results, [line for line in batch.splitlines() if line.startswith("tuneloom_batch_size_")], extra
    finally:
        memory.stop()
        server.terminate()
        server.wait(60)


def _mean_batch(lines: list[str]) -> float:
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines}
    count = values.get("tuneloom_batch_size_count", 0.0)
    return round(values.get("tuneloom_batch_size_sum", 0.0) / count, 2) if count else 0.0


if __name__ == "__main__":
    main()
