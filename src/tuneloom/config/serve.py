"""The `serve` section: the OpenAI-compatible server, its models and per-request limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneloom.config.base import Strict
from tuneloom.config.data import RedactConfig


class ServedModelConfig(Strict):
    """A model served from a folder named in the project file (never from a path in a request)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="Name clients use in `model`.")
    path: str = Field(description="A PEFT adapter folder or a full model folder, relative to the project file.")
    base: str | None = Field(
        None, description="Base model of an adapter (catalog name or folder); default: the adapter's own config."
    )
    system_prompt: str | None = Field(None, description="Prepended when a chat request has no system message.")
    knowledge: str | None = Field(
        None, description="Chat models: a knowledge base (the project's `knowledge:` list) retrieved from on every request."
    )


class ServeLimitsConfig(Strict):
    """Per-request limits; a request over one gets a 4xx answer naming the limit."""

    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body.")
    max_prompt_tokens: int = Field(2048, gt=0, description="Longest prompt after the chat template.")
    max_tokens: int = Field(512, gt=0, description="Largest max_tokens a request may ask for (also the default).")
    max_n: int = Field(4, gt=0, description="Largest n (choices per request).")
    max_inputs: int = Field(64, gt=0, description="Most texts in one embeddings or classify request.")


class ServeConfig(Strict):
    """`tuneloom serve`: the OpenAI-compatible server (defaults are safe for a laptop)."""

    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["auto", "transformers", "vllm", "llamacpp"] = Field(
        "auto",
        description="auto: vLLM when it is installed (or serve.vllm_python is set) and a GPU is present, else "
        "transformers. vllm: a managed vLLM server process (GPU or CPU build) in its own environment. "
        "llamacpp: managed llama.cpp processes on GGUF exports (pip install 'tuneloom[llamacpp]').",
    )
    llamacpp_quant: Literal["f16", "q8_0", "q4_0"] = Field(
        "q8_0", description="GGUF quantization the llamacpp backend serves (exported once, cached in the workspace)."
    )
    vllm_python: str | None = Field(
        None,
        description="vllm backend: the Python of vLLM's own environment (`make vllm-env` builds .venv-vllm), absolute "
        "or relative to the current directory; default: this interpreter when it imports vllm.",
    )
    vllm_kv_cache_gb: int = Field(
        2, gt=0, description="vllm backend on CPUs: GiB of memory for each vLLM process's KV cache (VLLM_CPU_KVCACHE_SPACE)."
    )
    vllm_max_lora_rank: Literal[8, 16, 32, 64, 128, 256, 320, 512] = Field(
        16,
        description="vllm backend: the largest LoRA rank served (default: train's default rank); an adapter of a "
        "higher rank is refused. vLLM sizes its LoRA buffers, and on CPUs the LoRA cost per token, by it.",
    )
    vllm_start_timeout_s: float = Field(
        900.0, gt=0, description="vllm backend: how long a vLLM process may take to start (it compiles: minutes on a CPU)."
    )
    vllm_args: list[str] = Field(
        default_factory=list,
        description="vllm backend: extra arguments for vLLM's OpenAI server, e.g. ['--enforce-eager'] or "
        "['--gpu-memory-utilization', '0.5'].",
    )
    auth: bool = Field(True, description="Require an API key (`tuneloom keys create`) on every /v1 request.")
    base_models: list[str] | None = Field(
        None, description="Catalog models served by name; default: the catalog models of the project's tasks."
    )
    models: list[ServedModelConfig] = Field(default_factory=list, description="Extra models from folders.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where computed natively.")
    torch_threads: int | None = Field(
        None,
        gt=0,
        description="CPU threads for the model (torch, or each llama.cpp process); default: torch's, or all cores "
        "for llama.cpp. 1 is far faster on a CPU shared with other jobs.",
    )
    decode_weights: Literal["auto", "int8", "model"] = Field(
        "auto",
        description="Weights the transformers backend decodes with. auto: int8 weight-only on CPUs (half the bytes "
        "read per token; see docs/serving.md for the measured speed and answer agreement), the model's own on GPUs. "
        "int8: as auto, and an error on a GPU. model: the checkpoint's weights at `precision`.",
    )
    max_batch_size: int = Field(8, gt=0, description="Sequences decoded together in one step.")
    max_queue: int = Field(64, ge=0, description="Requests waiting for a batch slot; beyond it: 429.")
    request_timeout_s: float = Field(120.0, gt=0, description="Longest a request may take, queueing included.")
    adapter_memory_mb: float = Field(512.0, gt=0, description="Budget for loaded adapters; least recently used go first.")
    alias_ttl_s: float = Field(2.0, ge=0, description="How long a resolved `name` / `name@alias` is reused.")
    shutdown_grace_s: float = Field(30.0, ge=0, description="On shutdown, how long running requests may finish.")
    feedback_db: str | None = Field(
        None, description="SQLAlchemy URL of the completion/feedback store; default: SQLite feedback.db in the workspace."
    )
    store_prompts: bool = Field(True, description="Store request messages and answers with each completion id.")
    log_prompts: bool = Field(False, description="Also write prompts to the server log (off: logs hold no prompts).")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty: CORS off.")
    console: bool = Field(False, description="Also serve the web console at /console (see `tuneloom ui`).")
    redact: RedactConfig = Field(
        default_factory=RedactConfig,
        description="Personal data in stored requests and answers replaced by placeholders, as in data preparation.",
    )
    limits: ServeLimitsConfig = ServeLimitsConfig()
    knowledge: dict[str, str] = Field(
        default_factory=dict,
        description="Served chat model name -> knowledge base it retrieves from on every request; overrides the "
        "knowledge base its task names (registered models) and gives catalog base models one.",
    )
    knowledge_check_s: float = Field(
        2.0, ge=0, description="How often an open knowledge base is checked for a new build; a new one is swapped in."
    )
