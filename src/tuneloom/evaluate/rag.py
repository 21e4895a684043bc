"""With and without retrieval: each chat model scored on the same test questions, bare and with their passages.

The passages are those recorded at data-prep time (the question's top k), put in the prompt by
`tuneloom.knowledge.prompting`, as training, `tuneloom ask` and serving do. Besides the answer metrics:
the retrieval hit rate (was the chunk that grounds the reference answer retrieved) and groundedness (the
share of an answer's content words found in the retrieved passages, for every side alike).
"""

from __future__ import annotations

from typing import Any

from tuneloom.artifacts import Delta, RetrievalComparison, RetrievalExample
from tuneloom.config import TaskConfig
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap, ratio_metric
from tuneloom.knowledge.prompting import source_label
from tuneloom.knowledge.raft import passages_of, support

Scored = tuple[dict[str, float], list[str], dict[str, list[Any]]]  # metrics, answers, per-example scores
MEAN_METRICS = ("token_f1", "rouge_l", "exact_match", "groundedness")
SHOWN = ("loss", *MEAN_METRICS)


def _pairs(sides: dict[str, Scored]) -> list[tuple[str, str]]:
    """The comparisons the report shows, 'A vs B' meaning A minus B."""
    pairs = [("tuned+retrieval", "tuned"), ("tuned+retrieval", "base+retrieval"), ("base+retrieval", "base")]
    if "production+retrieval" in sides:
        pairs.append(("tuned+retrieval", "production+retrieval"))
    return pairs


def _with_groundedness(rows: list[dict[str, Any]], sides: dict[str, Scored]) -> dict[str, Scored]:
    """Each side's scores plus groundedness against the row's retrieved passages (the same passages for every side)."""
    texts = [[c.text for c in passages_of(r)] for r in rows]
    out: dict[str, Scored] = {}
    for name, (metrics, answers, each) in sides.items():
        grounded = [support(a, t) for a, t in zip(answers, texts)]
        out[name] = (
            {**metrics, "groundedness": sum(grounded) / max(len(grounded), 1)},
            answers,
            {**each, "groundedness": grounded},
        )
    return out


def _delta(a: Scored, b: Scored, metric: str, n: int) -> Delta:
    if metric == "loss":
        low, high = paired_bootstrap(n, ratio_metric(b[2]["answer_nll"], a[2]["answer_nll"]))
    else:
        low, high = paired_bootstrap(n, mean_metric(b[2][metric], a[2][metric]))
    return Delta(delta=a[0][metric] - b[0][metric], low=low, high=high)


def _slices(rows: list[dict[str, Any]], sides: dict[str, Scored]) -> dict[str, dict[str, dict[str, float]]]:
    """Slice -> side -> {n, token_f1, groundedness}, for rows with a `slice` value."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("slice"):
            groups.setdefault(str(r["slice"]), []).append(i)
    return {
        key: {
            name: {"n": float(len(idx)), **{m: sum(s[2][m][i] for i in idx) / len(idx) for m in ("token_f1", "groundedness")}}
            for name, s in sides.items()
        }
        for key, idx in sorted(groups.items())
    }


def _examples(rows: list[dict[str, Any]], sides: dict[str, Scored]) -> list[RetrievalExample]:
    out = []
    for i, r in enumerate(rows):
        record = r.get("knowledge") or {}
        hits = record.get("passages", [])
        sources = [
            {"n": n, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "section": source_label(c), "score": round(h["score"], 4)}
            for n, (c, h) in enumerate(zip(passages_of(r), hits), 1)
        ]
        out.append(
            RetrievalExample(
                id=r["id"],
                question=r["messages"][-2]["content"],
                reference=r["messages"][-1]["content"],
                slice=r.get("slice"),
                answers={name: s[1][i] for name, s in sides.items()},
                token_f1={name: round(s[2]["token_f1"][i], 4) for name, s in sides.items()},
                sources=sources,
                grounding=record.get("grounding"),
                hit=bool(record.get("hit")),
            )
        )
    return out


def retrieval_comparison(task: TaskConfig, rows: list[dict[str, Any]], scored: dict[str, Scored]) -> RetrievalComparison:
    """The typed four-way (or six-way, with production) comparison of `scored` sides on `rows`."""
    if task.knowledge is None:
        raise ValueError(f"task '{task.name}' names no knowledge base: there is no retrieval to compare")
    sides = _with_groundedness(rows, scored)
    grounded = [r for r in rows if (r.get("knowledge") or {}).get("grounding")]
    return RetrievalComparison(
        knowledge=task.knowledge,
        top_k=task.rag.top_k,
        n_examples=len(rows),
        n_grounded=len(grounded),
        hit_rate=sum(bool(r["knowledge"]["hit"]) for r in grounded) / len(grounded) if grounded else None,
        sides={name: {m: s[0][m] for m in SHOWN} for name, s in sides.items()},
        deltas={f"{a} vs {b}": {m: _delta(sides[a], sides[b], m, len(rows)) for m in SHOWN} for a, b in _pairs(sides)},
        slices=_slices(rows, sides),
        examples=_examples(rows, sides),
    )
