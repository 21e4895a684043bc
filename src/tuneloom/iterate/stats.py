"""Intervals for the monitor: Wilson for a rate, Newcombe for a difference of rates, normal for a mean."""

from __future__ import annotations

import math
from statistics import NormalDist


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level (1.96 for 0.95)."""
    return NormalDist().inv_cdf((1 + confidence) / 2)


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) without observations."""
    if n == 0:
        return 0.0, 1.0
    z, p = z_value(confidence), successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_difference(a: tuple[int, int], b: tuple[int, int], confidence: float) -> tuple[float, float, float]:
    """(a - b, low, high) for rates a = successes/n and b, by Newcombe's method (hybrid Wilson score)."""
    (sa, na), (sb, nb) = a, b
    pa, pb = sa / na if na else 0.0, sb / nb if nb else 0.0
    la, ua = wilson(sa, na, confidence)
    lb, ub = wilson(sb, nb, confidence)
    diff = pa - pb
    return diff, diff - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), diff + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


def mean_interval(values: list[float], confidence: float) -> tuple[float, float, float]:
    """(mean, low, high) by the normal approximation; a single value has a zero-width interval."""
    if not values:
        return 0.0, 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = z_value(confidence) * sd / math.sqrt(len(values))
    return mean, mean - half, mean + half
