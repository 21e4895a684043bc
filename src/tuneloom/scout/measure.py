"""Measurements on this machine, one subprocess per candidate.

A subprocess isolates a candidate that crashes, runs out of memory or overruns its time (it is
killed at its timeout) and gives a clean peak-memory reading: the process's peak resident memory
(or, on a GPU, torch's peak allocation) minus what it held before loading the model, taken after
loading and the speed runs (serving) and again after the quality scoring.

Run as `python -m tuneloom.scout.measure JOB.json OUT.json` by `run_measurement`.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tuneloom.atomic import write_json_atomic
from tuneloom.config import ScoutPrecision
from tuneloom.inference import load_tokenizer, model_dtype
from tuneloom.tasks import kind_of

MB = 1024**2
SPEED_TOKENS = 32  # new tokens per decode-speed measurement


class MeasureJob(BaseModel):
    """Everything the subprocess needs: the model, the sampled data and the settings."""

    path: str
    precision: ScoutPrecision
    task_type: str
    trust_remote_code: bool
    rows: list[dict[str, Any]]
    texts: list[str]  # the whole validation split's input text, for tokenizer efficiency
    shots: list[dict[str, Any]]
    probe_rows: list[dict[str, Any]]
    labels: list[str] | None
    descriptions: dict[str, str]
    max_length: int
    context_window: int | None
    max_new_tokens: int
    batch_size: int
    domain_text: str | None


class Measurement(BaseModel):
    device: str
    load_s: float
    peak_memory_mb: float  # load, then generation at batch 1 and 8: what serving the model takes
    scoring_peak_memory_mb: float  # also the quality scoring at eval.batch_size (long batched forwards)
    prefill_tokens_per_s: float
    decode_tokens_per_s_b1: float | None
    decode_tokens_per_s_b8: float | None
    ttft_ms: float | None
    latency_ms: float
    tokens_per_word: float
    over_context_share: float | None
    over_max_length_share: float
    quality: dict[str, float]
    domain_perplexity: float | None
    seconds: float


def run_measurement(job: MeasureJob, timeout_s: float, workdir: Path) -> tuple[Measurement | None, str | None]:
    """(measurement, None) or (None, the error) for one candidate, run in a subprocess with a timeout."""
    workdir.mkdir(parents=True, exist_ok=True)
    job_file, out_file = workdir / "job.json", workdir / "measurement.json"
    out_file.unlink(missing_ok=True)
    write_json_atomic(job_file, job.model_dump(mode="json"))
    cmd = [sys.executable, "-m", "tuneloom.scout.measure", str(job_file), str(out_file)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return (
            None,
            f"timed out: stopped after its time share of {timeout_s:.0f} s (raise scout.time_budget_s or lower scout.sample_size)",
        )
    (workdir / "stderr.log").write_text(proc.stderr or "")
    if out_file.is_file():
        result = json.loads(out_file.read_text())
        if result.get("error"):
            return None, result["error"]
        return Measurement.model_validate(result["measurement"]), None
    if proc.returncode == -signal.SIGKILL:
        return None, "killed by the system while measuring, most likely out of memory"
    tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return None, f"measurement process failed: {tail[0]}"


# ------------------------------------------------------------------------------------------------
# the subprocess


def _load(job: MeasureJob, decoder: bool, device: str) -> Any:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    factory = AutoModelForCausalLM if decoder else AutoModel
    kwargs: dict[str, Any] = {"trust_remote_code": job.trust_remote_code}
    if job.precision == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["dtype"] = torch.bfloat16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        return factory.from_pretrained(job.path, **kwargs).eval()
    kwargs["dtype"] = model_dtype(job.precision)
    model = factory.from_pretrained(job.path, **kwargs).eval()
    if job.precision == "int8":
        if device != "cpu":
            raise RuntimeError("int8 dynamic quantisation (torch.ao quantize_dynamic) runs on CPU only")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model.to(device)


def _prompts(job: MeasureJob, tokenizer: Any, decoder: bool) -> list[str]:
    """Eight requests from the validation data as the model would see them (chat template, or the prompt)."""
    from tuneloom.scout.quality import zero_shot_prompt

    rows = (job.rows * 8)[:8]
    if kind_of(job.task_type).scout_quality == "generation":
        return [tokenizer.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False) for r in rows]
    if decoder and job.labels:
        return [zero_shot_prompt(tokenizer, r["text"], job.labels) for r in rows]
    return [r["text"] for r in rows]


def _decoder_speed(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> dict[str, float]:
    import torch

    tokenizer.padding_side = "left"

    @torch.inference_mode()
    def timed(batch_prompts: list[str], n: int) -> tuple[float, int]:
        enc = tokenizer(batch_prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        started = time.perf_counter()
        model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return time.perf_counter() - started, int(enc["attention_mask"].sum())

    n = min(SPEED_TOKENS, max_new_tokens) if max_new_tokens > 1 else 2
    timed(prompts[:1], 2)  # warm-up: first-call kernel selection is not the model's speed
    ttft = statistics.median(timed(prompts[:1], 1)[0] for _ in range(3))
    t1, _ = timed(prompts[:1], n)
    p8, tokens8 = timed(prompts[:8], 1)
    t8, _ = timed(prompts[:8], n)
    decode1 = (n - 1) / max(t1 - ttft, 1e-6)
    return {
        "ttft_ms": 1000 * ttft,
        "prefill_tokens_per_s": tokens8 / max(p8, 1e-6),
        "decode_tokens_per_s_b1": decode1,
        "decode_tokens_per_s_b8": 8 * (n - 1) / max(t8 - p8, 1e-6),
        "latency_ms": 1000 * (ttft + (max_new_tokens - 1) / decode1),
    }


def _encoder_speed(model: Any, tokenizer: Any, prompts: list[str], max_length: int) -> dict[str, float]:
    import torch

    @torch.inference_mode()
    def timed(batch_prompts: list[str]) -> tuple[float, int]:
        enc = tokenizer(batch_prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_length).to(model.device)
        started = time.perf_counter()
        model(**enc)
        return time.perf_counter() - started, int(enc["attention_mask"].sum())

    timed(prompts[:1])
    single = [timed([p])[0] for p in prompts]
    t8, tokens8 = timed(prompts)
    return {"prefill_tokens_per_s": tokens8 / max(t8, 1e-6), "latency_ms": 1000 * statistics.mean(single)}


def _tokenizer_stats(tokenizer: Any, texts: list[str], context: int | None, max_length: int) -> dict[str, float | None]:
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    words = sum(len(t.split()) for t in texts)
    n = max(len(lengths), 1)
    return {
        "tokens_per_word": sum(lengths) / max(words, 1),
        "over_context_share": sum(x > context for x in lengths) / n if context else None,
        "over_max_length_share": sum(x > max_length for x in lengths) / n,
    }


def _peak(device: str) -> int:
    """Highest memory so far: the process's peak resident memory, or torch's peak GPU allocation."""
    import torch

    from tuneloom.train.memory import peak_rss_bytes

    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else peak_rss_bytes()


@contextmanager
def _loading_report() -> Iterator[list[str]]:
    """Collect what transformers logs while loading (its mismatch report), to put in the row's error."""
    import logging

    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]  # a one-off handler, no subclass needed
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def measure(job: MeasureJob) -> Measurement:
    import torch
    from transformers import AutoConfig

    from tuneloom.scout import quality
    from tuneloom.train.memory import rss_bytes

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = AutoConfig.from_pretrained(job.path, trust_remote_code=job.trust_remote_code)
    decoder = any(a.endswith("ForCausalLM") for a in (config.architectures or []))
    tokenizer = load_tokenizer(job.path, job.trust_remote_code)
    generation = kind_of(job.task_type).scout_quality == "generation"
    if generation and not (decoder and tokenizer.chat_template):
        raise RuntimeError("chat tasks need a causal LM with a chat template; this model has none")
    stats = _tokenizer_stats(tokenizer, job.texts, job.context_window, job.max_length)
    base_rss = rss_bytes() if device == "cpu" else 0
    loaded = time.perf_counter()
    with _loading_report() as report:
        try:
            model = _load(job, decoder, device)
        except Exception as exc:
            details = " ".join(" ".join(report).split())[-800:]  # transformers logs the details, then raises
            raise RuntimeError(
                f"cannot load the model at {job.precision}: {exc}" + (f" Details: {details}" if details else "")
            ) from None
    load_s = time.perf_counter() - loaded
    prompts = _prompts(job, tokenizer, decoder)
    speed = (
        _decoder_speed(model, tokenizer, prompts, job.max_new_tokens)
        if decoder
        else _encoder_speed(model, tokenizer, prompts, job.max_length)
    )
    serving_peak = _peak(device) - base_rss
    if generation:
        scores = quality.chat_quality(model, tokenizer, job.rows, job.shots, job.max_length, job.max_new_tokens, job.batch_size)
    else:
        scores = quality.classification_quality(
            model,
            tokenizer,
            decoder,
            job.rows,
            job.probe_rows,
            job.labels or [],
            job.descriptions,
            job.max_length,
            job.batch_size,
        )
    perplexity = None
    if decoder and job.domain_text:
        perplexity = quality.text_perplexity(
            model, tokenizer, job.domain_text, min(job.max_length, job.context_window or job.max_length)
        )
    return Measurement(
        device=device,
        load_s=load_s,
        peak_memory_mb=serving_peak / MB,
        scoring_peak_memory_mb=(_peak(device) - base_rss) / MB,
        prefill_tokens_per_s=speed["prefill_tokens_per_s"],
        decode_tokens_per_s_b1=speed.get("decode_tokens_per_s_b1"),
        decode_tokens_per_s_b8=speed.get("decode_tokens_per_s_b8"),
        ttft_ms=speed.get("ttft_ms"),
        latency_ms=speed["latency_ms"],
        tokens_per_word=stats["tokens_per_word"],
        over_context_share=stats["over_context_share"],
        over_max_length_share=stats["over_max_length_share"],
        quality=scores,
        domain_perplexity=perplexity,
        seconds=time.perf_counter() - started,
    )


def _main(job_file: str, out_file: str) -> int:
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    job = MeasureJob.model_validate_json(Path(job_file).read_text())
    try:
        result: dict[str, Any] = {"measurement": measure(job).model_dump()}
    except MemoryError:
        result = {"error": "out of memory while measuring"}
    except Exception as exc:  # any failure of this candidate becomes its row's error; the scout goes on
        result = {"error": f"{type(exc).__name__}: {exc}"}
    write_json_atomic(Path(out_file), result)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
