"""Constraints, ranking and the recommendation sentence.

The rule: a candidate that failed to measure or breaks a constraint (memory, latency, license,
context) is not ranked. The rest are ranked by the task's quality metric (chat: token F1 of the
few-shot answers, or zero-shot with `few_shot: 0`; classification: macro F1 of a linear probe on the
model's embeddings). Every candidate within `quality_tolerance` of the best counts as equally good,
and among those the one with the lowest measured peak memory is recommended (ties: lower latency).
"""

from __future__ import annotations

from pydantic import BaseModel

from tuneloom.catalog import ModelInfo
from tuneloom.config import ScoutConfig, ScoutConstraints
from tuneloom.scout.estimates import Estimate
from tuneloom.scout.measure import Measurement
from tuneloom.tasks.base import ScoutQuality


class ScoutRow(BaseModel):
    """One candidate at one precision: facts, estimates, measurements, and its standing."""

    task: str
    model: str
    label: str
    precision: str
    facts: ModelInfo | None = None
    estimates: dict[str, Estimate] = {}
    measurement: Measurement | None = None
    error: str | None = None
    violations: list[str] = []
    quality: float | None = None
    rank: int | None = None
    recommended: bool = False

    @property
    def name(self) -> str:
        return f"{self.label} @ {self.precision}"


def quality_metric(quality: ScoutQuality, scout: ScoutConfig) -> str:
    """The score candidates are ranked by: the probe's macro F1, or the answers' token F1."""
    if quality == "probe":
        return "probe_macro_f1"
    return "few_shot_token_f1" if scout.few_shot > 0 else "zero_shot_token_f1"


def violations(row: ScoutRow, limits: ScoutConstraints) -> list[str]:
    """Why the row breaks the project's constraints (empty when it meets them all)."""
    out = []
    m, f = row.measurement, row.facts
    if m is not None and limits.max_memory_gb is not None and m.peak_memory_mb / 1024 > limits.max_memory_gb:
        out.append(f"peak memory {m.peak_memory_mb / 1024:.2f} GB > max_memory_gb {limits.max_memory_gb}")
    if m is not None and limits.max_latency_ms is not None and m.latency_ms > limits.max_latency_ms:
        out.append(f"latency {m.latency_ms:.0f} ms > max_latency_ms {limits.max_latency_ms:g}")
    if f is not None and limits.licenses is not None and f.license.lower() not in {x.lower() for x in limits.licenses}:
        out.append(f"license '{f.license}' is not in the allowed licenses {limits.licenses}")
    if f is not None and limits.min_context is not None and (f.context_window or 0) < limits.min_context:
        out.append(f"context window {f.context_window or 'unknown'} < min_context {limits.min_context}")
    return out


def rank_rows(rows: list[ScoutRow], metric: str, scout: ScoutConfig) -> tuple[ScoutRow | None, str]:
    """Mark violations, ranks and the recommended row; returns it with the sentence that explains it."""
    for row in rows:
        row.violations = violations(row, scout.constraints)
        row.quality = row.measurement.quality.get(metric) if row.measurement else None
    eligible = [r for r in rows if r.error is None and not r.violations and r.quality is not None]
    if not eligible:
        reasons = "; ".join(f"{r.name}: {r.error or ', '.join(r.violations) or 'no quality score'}" for r in rows)
        return None, f"No candidate can be recommended: {reasons}."
    eligible.sort(key=lambda r: (-r.quality, r.measurement.peak_memory_mb, r.measurement.latency_ms))  # type: ignore[operator,union-attr]  # eligible rows have quality and measurement
    for i, row in enumerate(eligible, 1):
        row.rank = i
    best = eligible[0]
    pool = [r for r in eligible if r.quality >= best.quality - scout.quality_tolerance]  # type: ignore[operator]  # eligible rows have a quality
    chosen = min(pool, key=lambda r: (r.measurement.peak_memory_mb, r.measurement.latency_ms))  # type: ignore[union-attr]  # eligible rows have a measurement
    chosen.recommended = True
    return chosen, explain(chosen, best, eligible, metric, scout.quality_tolerance)


def _speed(row: ScoutRow) -> tuple[float, str]:
    m = row.measurement
    assert m is not None
    if m.decode_tokens_per_s_b1:
        return m.decode_tokens_per_s_b1, "decode speed"
    return 1000 / max(m.latency_ms, 1e-9), "throughput at batch 1"


def _versus(a: ScoutRow, b: ScoutRow) -> str:
    """'0.45x the memory (310 MB vs 690 MB) and 1.8x the decode speed (40 vs 22 tokens/s)' of a against b."""
    ma, mb = a.measurement, b.measurement
    assert ma is not None and mb is not None
    sa, what = _speed(a)
    sb, _ = _speed(b)
    unit = "tokens/s" if what == "decode speed" else "requests/s"
    return (
        f"{ma.peak_memory_mb / max(mb.peak_memory_mb, 1e-9):.2f}x the memory ({ma.peak_memory_mb:.0f} MB vs "
        f"{mb.peak_memory_mb:.0f} MB) and {sa / max(sb, 1e-9):.1f}x the {what} ({sa:.1f} vs {sb:.1f} {unit})"
    )


def explain(chosen: ScoutRow, best: ScoutRow, ranked: list[ScoutRow], metric: str, tolerance: float) -> str:
    if chosen is not best:
        gap = 100 * (best.quality - chosen.quality)  # type: ignore[operator]  # ranked rows have a quality
        return (
            f"{chosen.name}: within {gap:.1f} points of {best.name}'s {metric} ({chosen.quality:.3f} vs "
            f"{best.quality:.3f}) at {_versus(chosen, best)}."
        )
    if len(ranked) == 1:
        return f"{chosen.name}: the only candidate that was measured and meets the constraints ({metric} {chosen.quality:.3f})."
    second = ranked[1]
    gap = 100 * (chosen.quality - second.quality)  # type: ignore[operator]  # ranked rows have a quality
    if gap <= 100 * tolerance:
        return (
            f"{chosen.name}: the best {metric} ({chosen.quality:.3f}) and the least memory of the candidates "
            f"within {100 * tolerance:.0f} points of it; against {second.name} ({second.quality:.3f}) it runs at "
            f"{_versus(chosen, second)}."
        )
    return (
        f"{chosen.name}: the best {metric} ({chosen.quality:.3f}), {gap:.1f} points above {second.name} "
        f"(more than the {100 * tolerance:.0f}-point tolerance), at {_versus(chosen, second)}."
    )
