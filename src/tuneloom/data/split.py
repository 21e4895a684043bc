"""Train/validation/test: seeded, stratified by label, group-aware, or the user's own split column."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from tuneloom.config import SplitConfig

SPLITS = ("train", "validation", "test")


def _stratum(rows: list[dict[str, Any]]) -> str:
    """The label a unit (one row or one group) is stratified by: its most common label."""
    labels = Counter(r["label"] if "label" in r else (r["labels"][0] if r.get("labels") else "") for r in rows)
    return sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def split_examples(examples: list[dict[str, Any]], cfg: SplitConfig) -> dict[str, list[dict[str, Any]]]:
    """Seeded split. Rows with a `split` value go where it says; rows sharing a `group` stay together.

    Allocation is per label by hand rather than sklearn's stratified splitters: it guarantees
    every label with at least 3 units (rows, or groups) appears in validation and test, which
    sklearn does not promise for the rare classes real queues have, and it handles groups and
    stratification together.
    """
    rng = random.Random(cfg.seed)
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    units: dict[str, list[dict[str, Any]]] = {}
    for i, ex in enumerate(examples):
        if "split" in ex:
            out[ex["split"]].append(ex)
        else:
            units.setdefault(f"g:{ex['group']}" if ex.get("group") else f"r:{i}", []).append(ex)
    strata: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for unit in units.values():
        strata[_stratum(unit)].append(unit)
    for key in sorted(strata):
        items = strata[key]
        rng.shuffle(items)
        n, rows = len(items), sum(len(u) for u in items)
        want_test = max(1, round(rows * cfg.test)) if n >= 3 else 0
        want_val = (max(1, round(rows * cfg.validation)) if n >= 3 else 0) if cfg.validation > 0 else 0
        taken = {"test": 0, "validation": 0}
        for idx, unit in enumerate(items):
            target = next((s for s, want in (("test", want_test), ("validation", want_val)) if taken[s] < want), "train")
            if idx == n - 1:
                target = "train"  # never leave training without this label
            out[target].extend(unit)
            if target != "train":
                taken[target] += len(unit)
    for split in SPLITS:
        rng.shuffle(out[split])
    return out
