"""The batching engine alone (no HTTP), on CPU or GPU: mixed-adapter continuous batching vs one-at-a-time generate.

    python bench/serve_engine.py [--model DIR] [--random-init] [--requests 32] [--concurrency 8] [--max-tokens 64]

Ours: `requests` chat prompts alternating between two random LoRA adapters, `concurrency` of them in
the engine at any time (a finished one is replaced at the next token, as concurrent clients would).
Baseline, in the same run: the same prompts one at a time with plain `generate` (`set_adapter` per
request). Both run every request for exactly `max_tokens` tokens (EOS ignored), so the token counts
match. First it checks that the engine's greedy tokens equal `generate`'s for every request.
`--random-init` builds the model from the folder's config with random weights (for machines that
cannot hold the real weights); throughput does not depend on the weights' values. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import torch

PROMPTS = [
    "How do I reset my Doorbell Pro?",
    "What is the warranty on the Smart Plug?",
    "Do you ship to France?",
    "Can I return the Thermostat after 30 days?",
    "Is the Motion Sensor waterproof?",
    "My hub is offline, what now?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder (default: the catalog's smollm2-135m-instruct).")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tuneloom.serve.adapters import AdapterCache
    from tuneloom.serve.engine import BatchEngine, SamplingParams, Sequence

    if args.model is None:
        from tuneloom.catalog import resolve_model

        args.model = str(resolve_model("smollm2-135m-instruct"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def load() -> torch.nn.Module:
        if args.random_init:
            torch.manual_seed(0)
            return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.model), dtype=dtype)
        return AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)

    tmp = Path(tempfile.mkdtemp(prefix="tuneloom-engine-bench-"))
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        get_peft_model(
            load(), LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        ).save_pretrained(tmp / f"a{seed}")
        adapters.append(tmp / f"a{seed}")
    jobs = [
        (
            tokenizer.apply_chat_template(
                [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"],
            f"a{1 + i % 2}",
        )
        for i in range(args.requests)
    ]

    # baseline: one request at a time, plain generate
    base = PeftModel.from_pretrained(load().to(device), str(adapters[0]), adapter_name="a1").eval()
    base.load_adapter(str(adapters[1]), adapter_name="a2")
    reference, started = [], 0.0
    for i, (ids, adapter) in enumerate(jobs + jobs[:2]):  # the first two warm up
        if i == 2:
            sync(device)
            started = time.perf_counter()
        base.set_adapter(adapter)
        with torch.inference_mode():
            out = base.generate(
                input_ids=torch.tensor([ids], device=device),
                max_new_tokens=args.max_tokens,
                min_new_tokens=args.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        reference.append(out[0, len(ids) :].tolist())
    sync(device)
    baseline_s = time.perf_counter() - started
    reference = reference[: len(jobs)]
    del base

    # ours: the engine, `concurrency` requests in flight, mixed adapters in one batch
    cache = AdapterCache(load().to(device).eval(), 2**30)
    for name, path in (("a1", adapters[0]), ("a2", adapters[1])):
        cache.acquire(name, path)
    engine = BatchEngine(
        cache.model, tokenizer, max_batch_size=args.concurrency, max_queue=args.requests, prepare_adapter=cache.prepare
    )
    engine.eos_ids = set()  # fixed-length answers, like min_new_tokens in the baseline
    slots = threading.Semaphore(args.concurrency)
    finished = threading.Semaphore(0)
    batch_sizes: list[int] = []
    engine.on_step = lambda running, waiting: batch_sizes.append(running)

    def run_all() -> tuple[list[Sequence], float]:
        seqs = []
        t0 = time.perf_counter()
        for ids, adapter in jobs:
            slots.acquire()
            seq = Sequence(
                index=0,
                prompt_ids=ids,
                adapter=adapter,
                params=SamplingParams(max_tokens=args.max_tokens, temperature=0),
                emit=lambda e: (slots.release(), finished.release()) if e.finish_reason else None,
                deadline=time.monotonic() + 3600,
            )
            engine.submit([seq])
            seqs.append(seq)
        for _ in jobs:
            finished.acquire()
        return seqs, time.perf_counter() - t0

    run_all()  # warm-up
    batch_sizes.clear()
    seqs, ours_s = run_all()
    engine.close()
    same = sum(
        _until_eos(s.out_ids, tokenizer.eos_token_id) == _until_eos(ref, tokenizer.eos_token_id)
        for s, ref in zip(seqs, reference)
    )  # generate's min_new_tokens bans EOS; the engine just ignores it
    tokens = args.requests * args.max_tokens
    print(
        json.dumps(
            {
                "bench": "serve_engine",
                "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                "model": Path(args.model).name + (" (random init)" if args.random_init else ""),
                "requests": args.requests,
                "concurrency": args.concurrency,
                "max_tokens": args.max_tokens,
                "adapters": 2,
                "greedy_equal_to_generate": f"{same}/{len(jobs)}",
                "ours_tokens_per_s": round(tokens / ours_s, 1),
                "baseline_tokens_per_s": round(tokens / baseline_s, 1),
                "ratio": round(baseline_s / ours_s, 2),
                "mean_batch_size": round(sum(batch_sizes) / max(len(batch_sizes), 1), 2),
            }
        )
    )


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
