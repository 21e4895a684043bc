"""Int8 weight-only linears for decoding on CPUs.

Decoding a small model one token at a time reads every weight once per step: it is bound by memory
traffic and per-op overhead, not arithmetic. Storing the decoder's linear weights as int8 with one
bf16 scale per output row halves the bytes read, and torch's `_weight_int8pack_mm` kernel multiplies
with them directly. Prompt prefill (many rows at once) is compute-bound and that kernel is slow there,
so prefill converts each weight to the activation dtype, uses the ordinary matmul and scales its output.

Hand-written rather than torchao's `Int8WeightOnlyConfig`: in eager mode torchao's tensor subclass
dequantizes the whole weight on every call (0.7 tokens/s measured on SmolLM2-135M here, against 29 for
plain bf16) and only pays off under torch.compile, which takes minutes on a 2-core machine and
recompiles for every mix of batch size and LoRA adapters that continuous batching produces.
"""

from __future__ import annotations

from typing import Any

import torch

# Rows (tokens) up to which the int8 kernel beats dequantize + bf16 matmul on the CPUs measured here.
DECODE_ROWS = 16


class Int8Linear(torch.nn.Linear):
    """A `torch.nn.Linear` whose weight is int8 per output row; peft wraps it like any Linear."""

    scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("weight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = linear.bias  # kept in the model's dtype (None for Llama-family projections)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(self.scale.dtype)
        if rows.shape[0] <= DECODE_ROWS:
            out = torch.ops.aten._weight_int8pack_mm(rows, self.weight, self.scale)
        else:
            # scaling the output rows is cheaper than scaling the weight: one pass over (rows x out) values
            out = torch.nn.functional.linear(rows, self.weight.to(rows.dtype)) * self.scale
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    @property
    def W_q(self) -> torch.Tensor:  # the name peft looks for
        """peft's `dequantize_module_weight` calls `dequantize()` on modules that have `W_q` (DoRA needs the
        base weight's norm); without it DoRA would read the int8 values as if they were weights."""
        return self.weight

    def dequantize(self) -> torch.Tensor:
        return self.weight.to(self.scale.dtype) * self.scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def quantize_decoder(model: Any) -> int:
    """Replace the decoder layers' and the output head's linears with Int8Linear, in place; returns how many.

    Embeddings stay in the model's dtype (a lookup reads one row per token). A tied output head gets its own int8
    copy, so the embedding table is not quantized with it. Must run before adapters are attached.
    """
    count = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype in (torch.bfloat16, torch.float32, torch.float16):
                quantized = Int8Linear(child)
                setattr(parent, name, quantized)
                count += 1
                if child is head:
                    model.config.tie_word_embeddings = False
    return count
