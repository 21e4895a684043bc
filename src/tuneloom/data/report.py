"""The dataset's HTML report: accounting per source, lengths, labels, drop reasons, redactions, near duplicates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tuneloom.data.format import dedup_texts
from tuneloom.reports import plots
from tuneloom.reports.html import render_to


def write_data_report(
    path: Path,
    manifest: dict[str, Any],
    splits: dict[str, list[dict[str, Any]]],
    rejects: list[dict[str, Any]],
    near_clusters: list[dict[str, Any]],
) -> Path:
    result = manifest["result"]
    images = []
    if manifest.get("tokens"):
        images.append(
            plots.histograms(
                {s: [e["_tokens"] for e in v] for s, v in splits.items()},
                "example length in tokens",
                "tokens",
                limit=manifest["tokens"]["train"]["max_length"],
            )
        )
    images.append(
        plots.histograms(
            {s: [sum(len(t) for t in dedup_texts(e)) for e in v] for s, v in splits.items()},
            "example length in characters",
            "characters",
        )
    )
    if manifest.get("label_counts"):
        images.append(plots.label_distribution(manifest["label_counts"], "examples per label and split"))
    reasons = Counter(r["reason"] for r in rejects)
    if reasons:
        images.append(plots.count_bars(dict(reasons), "rows dropped, by reason", color="#dc2626"))
    if result["redacted"]:
        images.append(plots.count_bars(result["redacted"], "personal data redacted, by type", color="#059669"))
    return render_to(
        path,
        "data_report.html.j2",
        title=f"Dataset {result['task']} {result['version']}",
        result=result,
        manifest=manifest,
        reasons=dict(reasons.most_common()),
        plots=images,
        clusters=near_clusters,
        totals={k: sum(s[k] for s in result["sources"]) for k in ("read", "kept", "duplicates", "near_duplicates")},
    )
