"""Answer agreement of the fast paths (a GGUF export on llama.cpp, int8 decoding) with transformers.

    python bench/export_agreement.py [--run RUN_DIR] [--quant q8_0] [--limit 0] [--threads 1]

Exports the run (default: the latest support-qa run of examples/acme-support, as `make demo` leaves
it) merged at `--quant`, then answers every test question greedily (96 new tokens, the project's
eval setting) three times in the same run: transformers on the run's adapter and base as `tuneloom eval`
loads them (baseline), llama.cpp on the GGUF, and the serve engine's CPU default (the base's linears
in int8, `serve.decode_weights: auto`, with the adapter on top as a request would use it). Prints as
its last line one JSON object: token F1 of each against the references, their differences to the
baseline, the share of answers identical to the baseline's, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def latest_run() -> Path:
    runs = sorted((REPO / "examples" / "acme-support" / "workspace" / "runs").glob("support-qa-*"))
    if not runs:
        sys.exit("no support-qa run: run `make demo` first, or pass --run RUN_DIR")
    return runs[-1]


def test_rows(run: Path, limit: int) -> list[dict]:
    from tuneloom.artifacts import read_snapshot

    rows = [json.loads(line) for line in (Path(read_snapshot(run).dataset.path) / "test.jsonl").open()]
    return rows[:limit] if limit else rows


def transformers_answers(run: Path, rows: list[dict], max_new: int, int8: bool = False) -> tuple[list[str], float]:
    from tuneloom.artifacts import read_snapshot
    from tuneloom.evaluate.chat import generate_answers
    from tuneloom.inference import attach_adapter, load_base, load_trained
    from tuneloom.serve.int8 import quantize_decoder
    from tuneloom.train import sft

    snap = read_snapshot(run)
    kind = snap.task["method"]["kind"]
    if int8:  # as the server loads it: the base converted first, the run's adapter attached on top
        base = load_base("causal_lm", snap.base_model_path, snap.precision, [], False)
        quantize_decoder(base)
        model = attach_adapter(base, run / "model")
    else:
        model = load_trained("causal_lm", run / "model", snap.base_model_path, kind, snap.precision, [], False)
    tokenizer = sft.load_tokenizer(run / "model")
    started = time.time()
    answers, _, _ = generate_answers(model, tokenizer, rows, max_new, 16, lambda _: None)
    return answers, time.time() - started


def llamacpp_answers(gguf: Path, run: Path, rows: list[dict], max_new: int, threads: int) -> tuple[list[str], float]:
    from tuneloom.export.verify import llamacpp
    from tuneloom.train import sft

    tokenizer = sft.load_tokenizer(run / "model")
    answers = []
    with llamacpp(gguf, threads=threads) as server:
        started = time.time()
        for row in rows:
            text = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out = server.post("/completion", {"prompt": ids, "n_predict": max_new, "temperature": 0})
            answers.append(out["content"].strip())
        return answers, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--quant", default="q8_0")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()

    import torch

    from tuneloom.evaluate.metrics import token_f1
    from tuneloom.export import export_model

    torch.set_num_threads(args.threads)
    run = (args.run or latest_run()).resolve()
    rows = test_rows(run, args.limit)
    refs = [r["messages"][-1]["content"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest = export_model(str(run), quant=args.quant, out_dir=Path(tmp) / "export")
        ours, ours_s = llamacpp_answers(folder / manifest.files[0].path, run, rows, args.max_new_tokens, args.threads)
    base, base_s = transformers_answers(run, rows, args.max_new_tokens)
    int8, int8_s = transformers_answers(run, rows, args.max_new_tokens, int8=True)
    f1_base = sum(map(token_f1, base, refs)) / len(rows)
    f1_ours = sum(map(token_f1, ours, refs)) / len(rows)
    f1_int8 = sum(map(token_f1, int8, refs)) / len(rows)
    print(
        json.dumps(
            {
                "bench": "export_agreement",
                "run": run.name,
                "quant": args.quant,
                "n": len(rows),
                "transformers_token_f1": round(f1_base, 4),
                "llamacpp_token_f1": round(f1_ours, 4),
                "token_f1_delta": round(f1_ours - f1_base, 4),
                "identical_answers": round(sum(a == b for a, b in zip(base, ours)) / len(rows), 4),
                "transformers_s": round(base_s, 1),
                "llamacpp_s": round(ours_s, 1),
                "int8_token_f1": round(f1_int8, 4),
                "int8_token_f1_delta": round(f1_int8 - f1_base, 4),
                "int8_identical_answers": round(sum(a == b for a, b in zip(base, int8)) / len(rows), 4),
                "int8_s": round(int8_s, 1),
                "ratio": round(f1_ours / max(f1_base, 1e-9), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
