"""CPU-speed changes to a peft LoRA model that leave what it computes unchanged.

Profiling a SmolLM2-135M LoRA step on this class of CPU (bf16, AMX) showed two costs that the
matmuls do not explain (bench/train_throughput.py and the README's Performance section):

- LoRA dropout drew its keep mask with `torch.bernoulli_`, which on the CPU generator costs ~10 ns
  per element: a third of the step for 210 adapted layers. `FastDropout` draws 64 random bits per
  call element-quarter and compares 15-bit lanes against p, 2.5-3x faster for the same mask law
  (p rounded to 1/32768).
- sdpa's CPU flash-attention backward took 19 ms per layer at 8 x 120 tokens, against 8 ms for
  plain matmul + softmax ("eager"); eager's cost grows with the square of the length and passes
  sdpa's between 256 and 512 tokens (measured: 15 vs 28 ms at 128 tokens, 307 vs 106 ms at 512),
  so `attention_for` picks eager for short, unpacked batches on a CPU.
- peft casts each adapter's input to the adapter's dtype (fp32 adapters on a bf16 base), so every
  adapted layer copied its bf16 activations to fp32 before the dropout, and autocast copied them
  back to bf16 for the matmul. Under bf16 autocast the cast changes nothing but time, so it is
  turned off; the adapter weights stay fp32 (the optimizer updates fp32 master weights).
"""

from __future__ import annotations

from typing import Any

import torch

from tuneloom.config import TaskConfig
from tuneloom.tasks import kind_of

EAGER_MAX_TOKENS = 256  # the longest example for which eager attention beats sdpa on a CPU (see above)
LANE_BITS = 15  # each int64 of random bits gives four 16-bit lanes; the top bit of the top lane is always 0


class FastDropout(torch.nn.Module):
    """`torch.nn.Dropout` with a cheaper mask draw (same generator, so seeds and resumed RNG state hold).

    torch's CPU dropout draws one Bernoulli sample per element from the Mersenne Twister; drawing
    whole int64 words with `random_()` and reading each as four 15-bit uniforms costs a quarter of
    the draws. p is rounded to a multiple of 1/32768 (0.05 -> 0.04999).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * (1 << LANE_BITS))
        self.scale = 1.0 / (1.0 - self.threshold / (1 << LANE_BITS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        lanes = words.view(torch.int16)[:n].view(x.shape)
        keep = (lanes & ((1 << LANE_BITS) - 1)) >= self.threshold
        return x * keep.to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention_for(task: TaskConfig, longest: int) -> str:
    """The attention implementation to load a decoder with for training `task` (`train.attention`).

    `longest`: the longest training example in tokens (batches pad to their longest). Packed
    batches are one long row whose examples must not see each other: sdpa handles that without
    building the square score matrix that eager would. Encoder tasks (classification, NER) keep
    transformers' default, sdpa.
    """
    if not kind_of(task.type).causal_lm:
        return "sdpa"
    if task.train.attention != "auto":
        return task.train.attention
    on_cpu = not torch.cuda.is_available()
    return "eager" if on_cpu and not task.packs and longest <= EAGER_MAX_TOKENS else "sdpa"


def speed_up_lora(model: Any, precision: str) -> int:
    """Swap LoRA dropout for `FastDropout` and, under bf16, stop peft's fp32 input casts; returns layers changed.

    Only on the CPU: CUDA's dropout is already fast and fused kernels are the GPU's business.
    """
    if torch.cuda.is_available():
        return 0
    from peft.tuners.lora import LoraLayer

    changed = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, dropout in list(module.lora_dropout.items()):
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                module.lora_dropout[name] = FastDropout(dropout.p)
        if precision == "bf16":
            module.cast_input_dtype_enabled = False  # autocast picks the matmul dtype; the cast only copied
        changed += 1
    return changed
