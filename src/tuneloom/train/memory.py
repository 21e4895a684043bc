"""`plan_memory`: peak memory of inference and of full / LoRA / QLoRA training, before loading a model.

The plan is an estimate from the model's shape (read from its config on the meta device, so no
weights are loaded) and the run's settings; scouting and training share it. Terms:

- weights: bytes per parameter by precision (fp32 4, bf16 2; int8 dynamic quantisation builds
  1-byte copies of the Linear weights from the fp32 model, so its peak holds both; NF4 keeps about
  0.53 bytes per Linear weight, the output head and the rest in the compute dtype, fp32 once
  prepared for QLoRA training), plus, for inference, the half-precision copy that loading a bf16/fp16
  checkpoint into fp32 holds for a moment (training's later peak is above it);
- trainable state: parameter copy, gradient and the two AdamW moments (full training in the weight
  dtype; LoRA adapters are fp32, so 16 bytes per adapter parameter);
- activations kept for the backward pass, per token and layer `ACT_HIDDEN * hidden +
  ACT_INTERMEDIATE * intermediate` elements (norm, projection, attention and MLP outputs), plus
  for LoRA the fp32 adapter outputs (and fp32 copies of their inputs in bf16); with gradient
  checkpointing each layer's input plus a few layers recomputed; and the output logits with their
  fp32 upcast, log-softmax and gradients (large for big vocabularies); with eager attention (see
  `speed.attention_for`) each layer's score matrices too, about 8 bytes per score in bf16
  (measured: +1.18 GB for SmolLM2 at 8 x 256 tokens);
- inference: KV cache for decoders, one layer's activations and the last position's logits;
- framework overhead: what the Python process holds before any model (torch, transformers, CUDA
  context), a fixed measured amount.

No library computes this for a model folder (accelerate's `estimate-memory` covers weights and
Adam states, not activations or quantised layers), so the formula lives here; the test suite checks
it against measured peaks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tuneloom.config import TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.tasks import kind_of
from tuneloom.train.speed import attention_for

Mode = Literal["inference", "full", "lora", "qlora"]
Precision = Literal["fp32", "bf16", "int8", "nf4"]
GB = 1024**3

ACT_HIDDEN = 14  # elements per token, layer and hidden unit kept for backward (checked on SmolLM2)
ACT_INTERMEDIATE = 4  # MLP: gate, up, activation and product
CPU_OVERHEAD = int(0.55 * GB)  # RSS of a process that imported torch + transformers (measured)
CUDA_OVERHEAD = int(0.6 * GB)  # CUDA context and allocator reserve
NF4_BYTES = 0.53  # 4 bits plus blockwise absmax scales (double quantisation)


class ModelShape(BaseModel):
    """The sizes the memory plan needs, read from a model folder's config."""

    parameters: int
    linear_parameters: int = Field(description="Weights of the Linear layers in the blocks (not the output head).")
    head_parameters: int = Field(description="Output head weights (the LM head), counted even when tied.")
    head_tied: bool
    lora_in: int = Field(description="Sum of in_features over the Linear layers LoRA adapts (all-linear).")
    lora_out: int = Field(description="Sum of out_features over the same layers.")
    layers: int
    hidden_size: int
    intermediate_size: int
    kv_size: int = Field(description="Width of the keys (and of the values) per layer.")
    attention_heads: int = Field(1, description="Query heads per layer (eager attention keeps a score matrix per head).")
    vocab_size: int = Field(description="Width of the output logits: the vocabulary (or the classes of a classification head).")
    decoder: bool
    stored_bytes: int = Field(4, description="Bytes per parameter in the weight files (2 for bf16/fp16 checkpoints).")


class MemoryPlan(BaseModel):
    """Estimated peak memory in bytes, by part."""

    mode: Mode
    precision: Precision
    seq_len: int
    batch_size: int
    gradient_checkpointing: bool
    attention: Literal["eager", "sdpa"] = "sdpa"
    device: Literal["cpu", "cuda"]
    weights: int
    trainable_parameters: int
    trainable_state: int = Field(description="Gradients and AdamW moments (and the fp32 adapter copies for LoRA).")
    activations: int
    overhead: int

    @property
    def model_bytes(self) -> int:
        """Everything the model and its run add on top of the framework overhead."""
        return self.weights + self.trainable_state + self.activations

    @property
    def total(self) -> int:
        return self.model_bytes + self.overhead

    def describe(self) -> str:
        what = "inference" if self.mode == "inference" else f"{self.mode} training"
        ckpt = ", gradient checkpointing" if self.gradient_checkpointing else ""
        return f"{what} in {self.precision} at batch {self.batch_size} x {self.seq_len} tokens{ckpt}"


def model_shape(path: str | Path, trust_remote_code: bool = False) -> ModelShape:
    """The model's sizes from its config, instantiated on the meta device (no weights read)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    decoder = any(a.endswith("ForCausalLM") for a in (config.architectures or []))
    with init_empty_weights():
        factory = AutoModelForCausalLM if decoder else AutoModel
        model = factory.from_config(config, trust_remote_code=trust_remote_code)
    head = model.get_output_embeddings() if decoder else None
    linear = lora_in = lora_out = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            linear += module.weight.numel()
            lora_in += module.in_features
            lora_out += module.out_features
    embed = model.get_input_embeddings()
    # on the meta device the tie is not made, so it is read from the config
    tied = head is not None and bool(getattr(config, "tie_word_embeddings", False))
    params = sum(p.numel() for p in model.parameters())
    if tied and head is not None and head.weight is not embed.weight:
        params -= head.weight.numel()
    hidden = int(getattr(config, "hidden_size", 0) or embed.weight.shape[1])
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    head_dim = int(getattr(config, "head_dim", 0) or hidden // heads)
    kv_heads = int(getattr(config, "num_key_value_heads", 0) or heads)
    return ModelShape(
        parameters=params,
        linear_parameters=linear,
        head_parameters=head.weight.numel() if head is not None else 0,
        head_tied=tied,
        lora_in=lora_in,
        lora_out=lora_out,
        layers=int(getattr(config, "num_hidden_layers", 1)),
        hidden_size=hidden,
        intermediate_size=int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden),
        kv_size=kv_heads * head_dim,
        attention_heads=heads,
        vocab_size=int(getattr(config, "vocab_size", embed.weight.shape[0])),
        decoder=decoder,
        stored_bytes=2
        if str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", "")).endswith(("bfloat16", "float16"))
        else 4,
    )


def _weights(shape: ModelShape, precision: Precision, mode: Mode) -> int:
    other = shape.parameters - shape.linear_parameters - (0 if shape.head_tied else shape.head_parameters)
    head_untied = 0 if shape.head_tied else shape.head_parameters
    if precision == "fp32":
        return 4 * shape.parameters
    if precision == "bf16":
        return 2 * shape.parameters
    if precision == "int8":  # quantize_dynamic works on the fp32 model and adds int8 copies of the Linear weights
        return int(4 * shape.parameters + shape.linear_parameters + shape.head_parameters)
    rest = 4 if mode == "qlora" else 2  # prepare_model_for_kbit_training casts the rest to fp32
    return int(NF4_BYTES * shape.linear_parameters + rest * (other + head_untied))


def plan_memory(
    shape: ModelShape,
    mode: Mode,
    precision: Precision,
    seq_len: int,
    batch_size: int = 1,
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    device: Literal["cpu", "cuda"] | None = None,
    attention: Literal["eager", "sdpa"] = "sdpa",
) -> MemoryPlan:
    """Estimated peak memory of one model at the given settings (see the module docstring)."""
    if mode == "qlora" and precision != "nf4":
        raise TuneloomError(f"qlora trains on NF4 weights; precision {precision!r} does not apply (use 'nf4')")
    if mode in ("full", "lora") and precision not in ("fp32", "bf16"):
        raise TuneloomError(f"{mode} training needs fp32 or bf16 weights, not {precision!r}")
    if device is None:
        device = "cuda" if _cuda() else "cpu"
    act_bytes = 2 if precision in ("bf16", "nf4") else 4
    tokens = seq_len * batch_size
    weights = _weights(shape, precision, mode)
    if mode == "inference" and precision in ("fp32", "int8") and shape.stored_bytes < 4:  # loading converts a half-precision copy
        weights += shape.stored_bytes * shape.parameters
    layer_act = ACT_HIDDEN * shape.hidden_size + ACT_INTERMEDIATE * shape.intermediate_size
    if mode == "inference":
        kv = 2 * shape.layers * shape.kv_size * tokens * act_bytes if shape.decoder else 0
        logits = 4 * batch_size * shape.vocab_size if shape.decoder else 0
        activations = kv + tokens * layer_act * act_bytes // 2 + logits
        trainable, state = 0, 0
    else:
        if mode == "full":
            trainable = shape.parameters
            state = trainable * (2 if precision == "bf16" else 4) * 3  # gradient + two AdamW moments
        else:
            trainable = lora_r * (shape.lora_in + shape.lora_out)
            state = trainable * 16  # fp32 adapter, its gradient and two moments
        layer_bytes = layer_act * act_bytes
        if mode != "full":  # fp32 adapters: their outputs, and in half precision fp32 copies of their inputs
            layer_bytes += 4 * (shape.lora_out + (shape.lora_in if act_bytes == 2 else 0)) // shape.layers
        if gradient_checkpointing:  # each layer's input, and a few layers' worth live during recomputation
            stored = tokens * (shape.layers * shape.hidden_size * act_bytes + 3 * layer_bytes)
        else:
            stored = tokens * shape.layers * layer_bytes
        # logits, their fp32 upcast, log-softmax and gradients (large for big vocabularies)
        logits = tokens * shape.vocab_size * (act_bytes + 12) if shape.decoder else 0
        scores = 0
        if attention == "eager":  # scores, their fp32 softmax and its half-precision copy, per head and layer
            kept = 3 if gradient_checkpointing else shape.layers
            scores = batch_size * shape.attention_heads * seq_len**2 * kept * (4 + 2 * act_bytes)
        activations = stored + logits + scores
    overhead = CUDA_OVERHEAD if device == "cuda" else CPU_OVERHEAD
    return MemoryPlan(
        mode=mode,
        precision=precision,
        seq_len=seq_len,
        batch_size=batch_size,
        gradient_checkpointing=gradient_checkpointing,
        attention=attention,
        device=device,
        weights=int(weights),
        trainable_parameters=int(trainable),
        trainable_state=int(state),
        activations=int(activations),
        overhead=overhead,
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cgroup_free(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1); None when unlimited.

    psutil reports the machine's memory, not a container's limit, so the cgroup files are read here.
    """
    for limit_file, usage_file in (
        (root / "memory.max", root / "memory.current"),
        (root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes"),
    ):
        try:
            raw = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if raw == "max" or int(raw) >= 1 << 60:
            return None
        return max(int(raw) - usage, 0)
    return None


def available_memory() -> tuple[int, str]:
    """(bytes free for a model, where): free GPU memory with CUDA, else available RAM within the cgroup limit."""
    if _cuda():
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free), f"GPU {torch.cuda.get_device_name()}"
    import psutil

    free = int(psutil.virtual_memory().available)
    limited = cgroup_free()
    if limited is not None and limited < free:
        return limited, "RAM (container limit)"
    return free, "RAM"


class InsufficientMemory(TuneloomError):
    """A run whose planned peak memory exceeds what this machine has free."""


def _gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


def fit_advice(
    shape: ModelShape,
    plan: MemoryPlan,
    available: int,
    lora_r: int = 16,
    quantizable: bool = True,
) -> str | None:
    """None when `plan` fits in `available` bytes, else a message naming settings that would fit."""
    if plan.total <= available:
        return None

    def replan(**changes: object) -> MemoryPlan:
        settings: dict[str, Any] = dict(
            mode=plan.mode,
            precision=plan.precision,
            seq_len=plan.seq_len,
            batch_size=plan.batch_size,
            gradient_checkpointing=plan.gradient_checkpointing,
            lora_r=lora_r,
            device=plan.device,
            attention=plan.attention,
        )
        settings.update(changes)
        return plan_memory(shape, **settings)

    options: list[tuple[str, MemoryPlan]] = []
    batch = plan.batch_size // 2
    while batch >= 1:
        candidate = replan(batch_size=batch)
        if candidate.total <= available:
            options.append((f"train.batch_size {batch} (raise grad_accum to keep the effective batch)", candidate))
            break
        batch //= 2
    length = plan.seq_len // 2
    while length >= 64:
        candidate = replan(seq_len=length)
        if candidate.total <= available:
            options.append((f"train.max_length {length}", candidate))
            break
        length //= 2
    if plan.mode != "inference":
        if not plan.gradient_checkpointing:
            options.append(("gradient checkpointing", replan(gradient_checkpointing=True)))
        if plan.attention == "eager":
            options.append(("train.attention sdpa", replan(attention="sdpa")))
        if plan.mode == "full":
            options.append(("method.kind lora", replan(mode="lora")))
        if plan.mode != "qlora" and quantizable and shape.decoder:
            options.append(("method.kind qlora", replan(mode="qlora", precision="nf4")))
        if plan.precision == "fp32":
            options.append(("train.precision bf16", replan(precision="bf16")))
    fitting = [f"{name} (about {_gb(p.total)})" for name, p in options if p.total <= available]
    need = f"{plan.describe()} needs about {_gb(plan.total)} but only {_gb(available)} is free"
    if not fitting:
        return f"{need}, and none of smaller batch, shorter max_length, LoRA/QLoRA or gradient checkpointing fits; use a smaller model or a machine with more memory."
    return f"{need}. Settings that would fit: {'; '.join(fitting)}."


def check_training_memory(
    task: TaskConfig, model_path: Path, precision: str, labels: int = 0, longest: int | None = None
) -> MemoryPlan:
    """The plan of training `task`; raises InsufficientMemory, naming settings that fit, when it does not fit.

    Batches are padded to their longest example, so a batch of `longest` tokens (the longest encoded
    training example; max_length when not given) is the run's worst case.
    """
    shape = model_shape(model_path, task.trust_remote_code)
    if kind_of(task.type).head == "sequence_classification":  # a head's logits, and fp32 weights (see train.classify)
        shape, precision = shape.model_copy(update={"vocab_size": max(labels, 2)}), "fp32"
    mode = "lora" if task.method.kind == "dora" else task.method.kind  # DoRA's magnitude vectors are tiny next to LoRA's A and B
    seq = min(longest or task.train.max_length, task.train.max_length)
    plan = plan_memory(
        shape,
        mode,
        "nf4" if mode == "qlora" else precision,  # type: ignore[arg-type]  # precision comes in as str (choose_precision's values)
        seq,
        task.train.batch_size,
        gradient_checkpointing=task.train.gradient_checkpointing,
        lora_r=task.method.r,
        attention=attention_for(task, seq),  # type: ignore[arg-type]  # attention_for returns "eager" or "sdpa" as str
    )
    available, where = available_memory()
    advice = fit_advice(shape, plan, available, task.method.r, shape.decoder)
    if advice:
        raise InsufficientMemory(f"task '{task.name}' ({task.model}) will not fit in this machine's {where}: {advice}")
    return plan


def rss_bytes() -> int:
    """This process's resident memory now (for measured peaks, see `peak_rss_bytes`)."""
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def peak_rss_bytes() -> int:
    """This process's highest resident memory so far.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec. Not ru_maxrss: that keeps the
    high-water mark across fork and exec, so a subprocess started by a large parent (a test runner,
    the scout) would report the parent's size as its own peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
