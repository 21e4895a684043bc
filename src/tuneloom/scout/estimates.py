"""Memory estimates of a candidate for inference and training, from the shared planner."""

from __future__ import annotations

from pydantic import BaseModel

from tuneloom.config import ScoutPrecision, TaskConfig
from tuneloom.tasks import kind_of
from tuneloom.train.memory import GB, ModelShape, fit_advice, plan_memory


class Estimate(BaseModel):
    what: str
    gb: float
    fits: bool
    advice: str | None = None


def candidate_estimates(
    shape: ModelShape, task: TaskConfig, precision: ScoutPrecision, context: int, available: int, quantizable: bool
) -> dict[str, Estimate]:
    """Inference at `context` tokens (batch 1) at the candidate's precision; full, LoRA and QLoRA
    training at the task's max_length and batch size (bf16/fp32 weights as the candidate's precision
    allows; QLoRA on NF4 weights)."""
    head = kind_of(task.type).head == "sequence_classification"  # heads train with fp32 weights
    train_precision = "fp32" if precision == "fp32" or head else "bf16"
    plans = {"inference": plan_memory(shape, "inference", precision, context, 1)}
    for mode in ("full", "lora", "qlora"):
        if mode == "qlora" and not (shape.decoder and quantizable):
            continue
        plans[mode] = plan_memory(
            shape,
            mode,
            "nf4" if mode == "qlora" else train_precision,  # type: ignore[arg-type]  # "fp32" or "bf16" as str
            task.train.max_length,
            task.train.batch_size,
            lora_r=task.method.r,
        )
    return {
        mode: Estimate(
            what=plan.describe(),
            gb=round(plan.total / GB, 3),
            fits=plan.total <= available,
            advice=fit_advice(shape, plan, available, task.method.r, quantizable) if mode != "inference" else None,
        )
        for mode, plan in plans.items()
    }
