"""Matplotlib figures for reports, returned as base64 PNG so a report is one self-contained file."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen before pyplot loads

BASE, TUNED = "#9aa5b1", "#2563eb"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def loss_curves(metrics: list[dict[str, Any]], title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    if train:
        ax.plot(*zip(*train), label="training loss", color=TUNED, alpha=0.8)
    if val:
        ax.plot(*zip(*val), label="validation loss", color="#dc2626", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def learning_rate(metrics: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 2.2))
    points = [(m["step"], m["learning_rate"]) for m in metrics if "learning_rate" in m]
    if points:
        ax.plot(*zip(*points), color="#059669")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    return _png(fig)


def metric_bars(comparison: dict[str, dict[str, float]], title: str) -> str:
    names = [m for m in comparison if m not in ("loss", "perplexity")] or list(comparison)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    xs = range(len(names))
    base = [comparison[m]["base"] for m in names]
    tuned = [comparison[m]["tuned"] for m in names]
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="base", color=BASE)
    ax.bar([x + 0.2 for x in xs], tuned, width=0.4, label="tuned", color=TUNED)
    for x, b, t in zip(xs, base, tuned):
        ax.text(x - 0.2, b, f"{b:.2f}", ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.2, t, f"{t:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, max(1.0, max(base + tuned) * 1.15))
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def per_class_f1(labels: list[str], base: dict[str, Any], tuned: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [base["per_class"][c]["f1"] for c in labels], width=0.4, label="base", color=BASE)
    ax.bar([x + 0.2 for x in xs], [tuned["per_class"][c]["f1"] for c in labels], width=0.4, label="tuned", color=TUNED)
    ax.set_xticks(list(xs), [f"{c}\n(n={tuned['per_class'][c]['support']})" for c in labels], fontsize=8)
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-class F1 on the test split")
    ax.legend()
    return _png(fig)


def confusion(labels: list[str], matrix: list[list[int]], title: str) -> str:
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ax.set_title(title)
    return _png(fig)


def deltas_with_intervals(comparison: dict[str, dict[str, float]], title: str) -> str:
    """Tuned minus base per metric, with the paired-bootstrap 95% interval as error bars."""
    names = [m for m in comparison if "ci_low" in comparison[m]]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * max(len(names), 1)))
    for i, m in enumerate(names):
        c = comparison[m]
        ax.errorbar(
            c["delta"], i, xerr=[[c["delta"] - c["ci_low"]], [c["ci_high"] - c["delta"]]], fmt="o", color=TUNED, capsize=4
        )
    ax.axvline(0, color="#6b7280", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("tuned - base (95% CI)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def histograms(series: dict[str, list[float]], title: str, xlabel: str, limit: float | None = None) -> str:
    """Overlaid histograms (one per split), with an optional vertical limit line such as max_length."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    values = [v for vs in series.values() for v in vs]
    bins = 40 if values else 1
    for (name, vs), color in zip(series.items(), (TUNED, "#f59e0b", "#dc2626", BASE)):
        if vs:
            ax.hist(vs, bins=bins, range=(0, max(values)), alpha=0.55, label=f"{name} (n={len(vs)})", color=color)
    if limit is not None:
        ax.axvline(limit, color="#111827", ls="--", lw=1, label=f"limit {limit:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def count_bars(counts: dict[str, int], title: str, color: str = TUNED) -> str:
    """Horizontal bars, largest first (drop reasons, redactions by type)."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.35 * max(len(items), 1)))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color=color)
    for i, (_, v) in enumerate(items[::-1]):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("count")
    return _png(fig)


def label_distribution(label_counts: dict[str, dict[str, int]], title: str) -> str:
    """Stacked bars: examples per label, split by train / validation / test."""
    labels = sorted({k for c in label_counts.values() for k in c}, key=lambda k: -sum(c.get(k, 0) for c in label_counts.values()))
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    bottom = [0] * len(labels)
    for (split, counts), color in zip(label_counts.items(), (TUNED, "#f59e0b", "#dc2626")):
        heights = [counts.get(k, 0) for k in labels]
        ax.bar(range(len(labels)), heights, bottom=bottom, label=split, color=color)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def trial_values(trials: list[dict[str, Any]], title: str) -> str:
    """Validation loss per search trial (pruned trials at their last reported value), with the running best."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    done = [(t["number"], t["value"]) for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    pruned = [(t["number"], t["last_reported"]) for t in trials if t["state"] == "PRUNED" and t.get("last_reported") is not None]
    if done:
        ax.scatter(*zip(*done), color=TUNED, label="completed", zorder=3)
        best, running = float("inf"), []
        for n, v in sorted(done):
            best = min(best, v)
            running.append((n, best))
        ax.step(*zip(*running), where="post", color="#059669", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), color=BASE, marker="x", label="pruned (last value)", zorder=3)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def param_importances(importances: dict[str, float]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.45 * len(importances)))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color=TUNED)
    ax.set_xlabel("importance for validation loss")
    ax.set_title("Parameter importance")
    return _png(fig)


def parallel_coordinates(trials: list[dict[str, Any]], params: list[str]) -> str:
    """One line per completed trial across its (min-max scaled) parameters, coloured by validation loss."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    axes = [*params, "validation loss"]
    if done:
        columns = [[float(t["params"][p]) for t in done] for p in params] + [[t["value"] for t in done]]
        scaled = [[(v - min(col)) / ((max(col) - min(col)) or 1.0) for v in col] for col in columns]
        values = columns[-1]
        lo, hi = min(values), max(values)
        cmap = plt.get_cmap("viridis_r")
        for i in range(len(done)):
            ax.plot(range(len(axes)), [col[i] for col in scaled], color=cmap((values[i] - lo) / ((hi - lo) or 1.0)), alpha=0.8)
        for j, col in enumerate(columns):
            ax.text(j, -0.08, f"{min(col):.3g}", ha="center", va="top", fontsize=7)
            ax.text(j, 1.05, f"{max(col):.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(axes)), axes, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.2, 1.15)
    ax.set_title("Completed trials (darker = lower validation loss)")
    return _png(fig)


def scatter(points: list[dict[str, Any]], x: str, y: str, x_label: str, y_label: str, title: str) -> str:
    """One labelled point per item (`name`, `x`, `y`, `size`: parameter count), area by size; the chosen one ringed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    largest = max((p["size"] for p in points), default=1) or 1
    for p in points:
        area = 60 + 900 * p["size"] / largest
        ax.scatter(
            p[x],
            p[y],
            s=area,
            alpha=0.55,
            color=TUNED if p.get("chosen") else BASE,
            edgecolors="#111827" if p.get("chosen") else "none",
            linewidths=2,
        )
        ax.annotate(p["name"], (p[x], p[y]), fontsize=8, xytext=(6, 6), textcoords="offset points")
    ax.margins(0.3)  # room for the largest markers and their labels
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title + " (area: parameters)")
    ax.grid(alpha=0.3)
    return _png(fig)
