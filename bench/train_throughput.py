"""LoRA SFT throughput of SmolLM2-135M-Instruct: Tuneloom's training path vs plain TRL + PEFT, in one run.

    python bench/train_throughput.py [--steps 24] [--skip-memory]

Both sides train the same LoRA (rank, alpha, dropout, all-linear) on the same examples (the
acme-support example's qa.jsonl: its prepared train split, in chat format with the project's
system prompt), for the same number of optimizer steps at the same batch size, learning rate and
schedule. The baseline is `trl.SFTTrainer` with an `SFTConfig` left at its defaults otherwise (bf16
autocast, padding to the longest example of each random batch, loss and logits on every token).
Ours is `tuneloom.train.train_task`, exactly what `tuneloom train` runs (length-grouped batches,
vocabulary logits only at answer positions, MLflow tracking on).

Each side runs in its own subprocess so that peak RSS figures do not mix; the matmul peak is
measured in this process. Figures:

- useful_tokens_per_s: non-padding tokens trained per second of `trainer.train()`.
- final_val_loss: mean NLL per answer token on the validation split, computed by the same function
  for both trained models (the baseline trains on all tokens, so its own loss is not comparable).
- mfu: model FLOPs / (train seconds x bf16 matmul peak). Model FLOPs for LoRA with frozen base
  weights: 4 * N_linear * T (forward, plus the backward to activations; frozen weights need no weight
  gradient) + 6 * N_lora * T + 4 * d_model * vocab * A (output projection where a loss is taken),
  with N_linear the decoder's linear-layer parameters, T the non-padding tokens and A the answer
  tokens. Attention score FLOPs (under 3% at these lengths) are left out.
- mfu_ceiling_matmuls_only: the MFU of a step that did nothing but the model's own matmuls (base
  linears forward and backward to inputs, adapters forward and backward, output projection at the
  answer positions) at the shapes of this run's average step, each timed alone here: the ceiling
  of any eager-PyTorch implementation on this CPU (`matmul_only_step_seconds`).
- peak RSS of full fine-tuning, LoRA and QLoRA: 3 optimizer steps each through `train_task`, each in
  its own process (so not comparable with peak_rss_mb, which covers all the steps of the timed run).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "acme-support" / "tuneloom.yaml"
TASK = "support-qa"


def _project(workspace: Path, steps: int, batch_size: int, method: str = "lora") -> Any:
    from tuneloom.config import load_project

    overrides = [
        f"{TASK}:train.max_steps={steps}",
        f"{TASK}:train.batch_size={batch_size}",
        f"{TASK}:train.eval_every={steps + 1}",  # no evaluation inside the timed loop (the baseline has none)
        f"{TASK}:method.kind={method}",
    ]
    project = load_project(EXAMPLE, overrides)
    project.config.workspace = str(workspace)
    return project


def _peak_rss_mb() -> float:
    from tuneloom.train.memory import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def _val_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> float:
    """Mean NLL per answer token over `rows` (the same function for both sides)."""
    import torch

    from tuneloom.train import sft

    enc, _, _ = sft.encode_split(tokenizer, rows, max_length)
    pad = sft.collator(tokenizer, answer_logits_only=False)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(enc), 8):
            batch = pad(enc[i : i + 8])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            targets = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(nll)
            count += int((targets != -100).sum())
    return total / count


def _flop_terms(model: Any) -> dict[str, int]:
    """N_linear (decoder linear layers, base weights only), N_lora, d_model, vocab size and the Linear shapes."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    linears = []
    for name, module in base.model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            linears.append((module.in_features, module.out_features))
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return {
        "n_linear": sum(i * o for i, o in linears),
        "n_lora": n_lora,
        "d_model": base.config.hidden_size,
        "vocab": base.config.vocab_size,
        "linears": linears,
    }


def _answer_tokens(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> tuple[int, int]:
    from tuneloom.train import sft

    enc, _, _ = sft.encode_split(tokenizer, rows, max_length)
    return sum(len(e["input_ids"]) for e in enc), sum(sum(1 for x in e["labels"][1:] if x != -100) for e in enc)


# --------------------------------------------------------------------------------------------
# children


def child_ours(workspace: Path, steps: int, batch_size: int) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneloom.data import load_split
    from tuneloom.train import sft, train_task

    project = _project(workspace, steps, batch_size)
    result = train_task(project, TASK)
    rss = _peak_rss_mb()
    task = project.config.task(TASK)
    tokenizer = sft.load_tokenizer(result.model_dir)
    import yaml

    base_path = yaml.safe_load((Path(result.run_dir) / "config.yaml").read_text())["base_model_path"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype="bfloat16"), result.model_dir)
    val_rows = load_split(Path(result.dataset), "validation")
    train_rows = load_split(Path(result.dataset), "train")
    per_epoch_tokens, per_epoch_answers = _answer_tokens(tokenizer, train_rows, task.train.max_length)
    return {
        "seconds": result.seconds,
        "tokens": result.tokens,
        "peak_rss_mb": rss,
        "steps": result.steps,
        "answer_fraction": per_epoch_answers / per_epoch_tokens,
        "final_val_loss": _val_loss(model, tokenizer, val_rows, task.train.max_length),
        "dataset": result.dataset,
        "lora_r": task.method.r,
        **_flop_terms(model),
    }


def child_baseline(workspace: Path, steps: int, batch_size: int, dataset: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tuneloom.catalog import resolve_model
    from tuneloom.data import load_split
    from tuneloom.train import sft

    project = _project(workspace, steps, batch_size)
    task = project.config.task(TASK)
    model_path = resolve_model(task.model)
    train_rows = load_split(Path(dataset), "train")
    config = SFTConfig(
        output_dir=str(workspace / "trl"),
        use_cpu=not torch.cuda.is_available(),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=task.train.lr,
        lr_scheduler_type=task.train.scheduler,
        warmup_steps=task.train.warmup_ratio,
        seed=task.train.seed,
        report_to="none",
        save_strategy="no",
        include_num_input_tokens_seen="non_padding",  # a counter, for tokens/s; not a speed setting
    )
    lora = LoraConfig(
        r=task.method.r,
        lora_alpha=task.method.alpha,
        lora_dropout=task.method.dropout,
        target_modules=task.method.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=str(model_path),
        args=config,
        train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in train_rows]),
        peft_config=lora,
    )
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    rss = _peak_rss_mb()
    tokenizer = sft.load_tokenizer(model_path)
    model = trainer.model
    return {
        "seconds": round(seconds, 2),
        "tokens": int(trainer.state.num_input_tokens_seen),
        "peak_rss_mb": rss,
        "steps": trainer.state.global_step,
        "bf16": config.bf16,
        "final_val_loss": _val_loss(model, tokenizer, load_split(Path(dataset), "validation"), task.train.max_length),
    }


def child_memory(workspace: Path, method: str, batch_size: int) -> dict[str, Any]:
    from tuneloom.train import train_task

    result = train_task(_project(workspace, 3, batch_size, method), TASK)
    return {"method": method, "peak_rss_mb": _peak_rss_mb(), "seconds": result.seconds}


# --------------------------------------------------------------------------------------------
# the run


def _matmul_seconds(m: int, k: int, n: int, dtype: Any, budget: float = 0.25, trials: int = 3) -> float:
    """Fastest time of one (m x k) @ (k x n) matmul: the best of `trials` timed loops of `budget` seconds."""
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b  # warm up (AMX tile configuration, caches)
    best = float("inf")
    for _ in range(trials):
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < budget:
            a @ b
            reps += 1
        best = min(best, (time.perf_counter() - started) / reps)
    return best


def matmul_peak_gflops(dtype_name: str, shapes: list[tuple[int, int, int]]) -> float:
    """Best GFLOP/s of torch.matmul over `shapes` (M, K, N) in `dtype_name` on this machine, now."""
    import torch

    dtype = getattr(torch, dtype_name)
    return max(2 * m * k * n / _matmul_seconds(m, k, n, dtype) / 1e9 for m, k, n in shapes)


def matmul_only_step_seconds(
    linears: list[tuple[int, int]], lora_r: int, tokens: int, answers: int, d_model: int, vocab: int
) -> float:
    """Seconds one training step would take if it did nothing but the model's own bf16 matmuls.

    Per base Linear (in, out): forward and the backward to its input; per adapter: A and B forward,
    backward to input and weight gradient; the output projection forward and backward at the answer
    positions. The MFU this allows is the ceiling of any implementation that runs these matmuls
    through torch on this CPU: everything else (norms, activations, attention, dropout, optimizer)
    only lowers it.
    """
    import torch

    dt = torch.bfloat16
    seconds, cache = 0.0, {}

    def mm(m: int, k: int, n: int) -> float:
        if (m, k, n) not in cache:
            cache[m, k, n] = _matmul_seconds(m, k, n, dt, budget=0.1, trials=2)
        return cache[m, k, n]

    for fan_in, fan_out in linears:
        seconds += mm(tokens, fan_in, fan_out) + mm(tokens, fan_out, fan_in)
        seconds += mm(tokens, fan_in, lora_r) + mm(tokens, lora_r, fan_out)  # adapter forward
        seconds += mm(tokens, fan_out, lora_r) + mm(tokens, lora_r, fan_in)  # adapter backward to inputs
        seconds += mm(lora_r, tokens, fan_out) + mm(fan_in, tokens, lora_r)  # adapter weight gradients
    return seconds + mm(answers, d_model, vocab) + mm(answers, vocab, d_model)


def _run_child(kind: str, workspace: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--workspace",
        str(workspace),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        *extra,
    ]
    started = time.time()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{kind} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    shown = {k: val for k, val in result.items() if k != "linears"}
    print(f"{kind}: {json.dumps(shown)} ({time.time() - started:.0f} s wall)", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps for each side")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-memory", action="store_true", help="skip the full / LoRA / QLoRA peak-RSS runs")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads for both sides (default: torch's, one per core); "
        "on a CPU other jobs are using, fewer threads than cores avoid stalls",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        import warnings

        warnings.filterwarnings("ignore")
        ws = Path(args.workspace)
        if args.child == "ours":
            result = child_ours(ws, args.steps, args.batch_size)
        elif args.child == "baseline":
            result = child_baseline(ws, args.steps, args.batch_size, args.dataset)
        else:
            result = child_memory(ws, args.child.removeprefix("memory-"), args.batch_size)
        print("RESULT " + json.dumps(result), flush=True)
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tuneloom-bench-") as tmp:
        ws = Path(tmp)
        ours = _run_child("ours", ws / "ours", args)
        baseline = _run_child("baseline", ws / "baseline", args, "--dataset", ours["dataset"])
        memory = {}
        if not args.skip_memory:
            for method in ("full", "lora", "qlora"):  # the same 3 steps each (peak RSS grows with steps seen)
                memory[method] = _run_child(f"memory-{method}", ws / method, args)["peak_rss_mb"]
    d, v = ours["d_model"], ours["vocab"]
    shapes = [(1024, d, 3 * d), (1024, 3 * d, d), (1024, d, d), (1024, d, 4096)]  # SmolLM2: MLP 576x1536, attention 576x576
    peak_bf16 = matmul_peak_gflops("bfloat16", shapes)
    peak_fp32 = matmul_peak_gflops("float32", shapes)

    def model_gflop(tokens: int) -> float:
        answers = tokens * ours["answer_fraction"]
        return (4 * ours["n_linear"] * tokens + 6 * ours["n_lora"] * tokens + 4 * d * v * answers) / 1e9

    step_tokens = round(ours["tokens"] / ours["steps"])
    matmul_only_s = matmul_only_step_seconds(
        [tuple(x) for x in ours["linears"]], ours["lora_r"], step_tokens, round(step_tokens * ours["answer_fraction"]), d, v
    )
    ours_tps = ours["tokens"] / ours["seconds"]
    base_tps = baseline["tokens"] / baseline["seconds"]
    line = {
        "bench": "train_throughput",
        "model": "smollm2-135m-instruct",
        "method": "lora",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "useful_tokens_per_s": round(ours_tps, 1),
        "baseline_useful_tokens_per_s": round(base_tps, 1),
        "ratio": round(ours_tps / base_tps, 3),
        "seconds": ours["seconds"],
        "baseline_seconds": baseline["seconds"],
        "tokens": ours["tokens"],
        "baseline_tokens": baseline["tokens"],
        "final_val_loss": round(ours["final_val_loss"], 4),
        "baseline_final_val_loss": round(baseline["final_val_loss"], 4),
        "peak_rss_mb": round(ours["peak_rss_mb"]),
        "baseline_peak_rss_mb": round(baseline["peak_rss_mb"]),
        "matmul_peak_gflops_bf16": round(peak_bf16, 1),
        "matmul_peak_gflops_fp32": round(peak_fp32, 1),
        "model_gflop": round(model_gflop(ours["tokens"]), 1),
        "mfu": round(model_gflop(ours["tokens"]) / (ours["seconds"] * peak_bf16), 4),
        "baseline_mfu": round(model_gflop(baseline["tokens"]) / (baseline["seconds"] * peak_bf16), 4),
        "step_s": round(ours["seconds"] / ours["steps"], 3),
        "matmul_only_step_s": round(matmul_only_s, 3),
        "mfu_ceiling_matmuls_only": round(model_gflop(step_tokens) / (matmul_only_s * peak_bf16), 4),
        "peak_rss_mb_by_method": {k: round(val) for k, val in memory.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "wall_s": round(time.time() - started),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
