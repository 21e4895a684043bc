"""Paired bootstrap confidence intervals for base-vs-tuned differences on the same examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def paired_bootstrap(
    n: int,
    metric: Callable[[np.ndarray], tuple[float, float]],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """CI of `tuned - base`, where `metric(idx)` returns (base, tuned) computed on examples `idx`.

    Both models are scored on the same resampled examples, so the interval reflects the
    difference between them rather than the spread of either score alone.
    """
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        base, tuned = metric(rng.integers(0, n, n))
        deltas[i] = tuned - base
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def mean_metric(base: Sequence[float], tuned: Sequence[float]) -> Callable[[np.ndarray], tuple[float, float]]:
    """For per-example scores whose metric is their mean (ROUGE-L, token F1, accuracy...)."""
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    return lambda idx: (float(b[idx].mean()), float(t[idx].mean()))


def ratio_metric(
    base: Sequence[tuple[float, float]], tuned: Sequence[tuple[float, float]]
) -> Callable[[np.ndarray], tuple[float, float]]:
    """For (sum, count) pairs whose metric is sum/count over the sample (loss per answer token)."""
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)

    def metric(idx: np.ndarray) -> tuple[float, float]:
        return float(b[idx, 0].sum() / max(b[idx, 1].sum(), 1)), float(t[idx, 0].sum() / max(t[idx, 1].sum(), 1))

    return metric
