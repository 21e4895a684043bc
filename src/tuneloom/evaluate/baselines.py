"""Cheap baselines, fitted on the run's train split and scored on the same test rows as base and tuned.

What a team could ship today for almost nothing: TF-IDF + logistic regression and a logistic
regression on the frozen base encoder's embeddings (classification), the answer of the most
similar training question by BM25 and by embedding (chat), a gazetteer of the training entities
(NER). Each baseline is {method, metrics, intervals, seconds}, where `intervals` holds the 95%
paired-bootstrap interval of tuned minus the baseline; a baseline that does not apply is
{skipped: reason}. Fitted predictions are cached in the run's dataset version folder as
`baselines-<hash>.json` (the hash covers the settings, the test rows and this module's version),
so a second evaluation of any run on that dataset reuses them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneloom.atomic import write_json_atomic
from tuneloom.evaluate.metrics import mean_scores, ner_scores, per_example_scores
from tuneloom.evaluate.stats import mean_metric, paired_bootstrap

if TYPE_CHECKING:
    from tuneloom.tasks.base import EvalContext

VERSION = 2  # bump when a baseline's recipe changes: old cache files are then ignored
EMBEDDER = "all-minilm-l6-v2"  # the packaged sentence encoder used for chat retrieval
Fitted = dict[str, dict[str, Any]]  # name -> {method, metrics, predictions, seconds} or {skipped}


def _train_rows(ctx: EvalContext) -> list[dict[str, Any]]:
    from tuneloom.data import load_split

    assert ctx.train_dir is not None
    return load_split(ctx.train_dir, "train")


def cached(ctx: EvalContext, settings: dict[str, Any], fit: Callable[[], Fitted]) -> Fitted:
    """`fit()`'s result, read from (or written to) the dataset folder's cache file for these settings."""
    assert ctx.train_dir is not None
    rows = json.dumps([r.get("id") for r in ctx.rows]) + json.dumps(ctx.rows, sort_keys=True, default=str)
    key = {"version": VERSION, "test_rows": hashlib.sha256(rows.encode()).hexdigest(), **settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = ctx.train_dir / f"baselines-{digest}.json"
    if path.is_file():
        try:
            return dict(json.loads(path.read_text(encoding="utf-8"))["baselines"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file is refitted and replaced
    fitted = fit()
    if not any("skipped" in b for b in fitted.values()):  # a failure may be passing: fit again next time
        write_json_atomic(path, {"key": key, "baselines": fitted})
    return fitted


def _timed(method: str, fit: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        predictions = fit()
    except (ImportError, ValueError, OSError, RuntimeError) as exc:  # one class only, an encoder that cannot load...
        return {"skipped": f"{method}: {exc}"}
    return {"method": method, "predictions": predictions, "seconds": round(time.perf_counter() - started, 2)}


# ---------------------------------------------------------------------------------------------
# embeddings


def embed_texts(
    model_dir: Path, texts: list[str], max_length: int, batch_size: int, trust_remote_code: bool = False
) -> np.ndarray:
    """L2-normalised embeddings of `texts` by the frozen model in `model_dir`, pooled as it was trained."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneloom.pooled_head import model_pooling, pool

    pooling = model_pooling(model_dir)[0]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of similar length pad little
    texts = [texts[i] for i in order]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:  # decoders: pad with the end-of-text token (masked out when pooling)
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            pooled = pool(model(**batch).last_hidden_state.float(), batch["attention_mask"], pooling)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    if not out:
        return np.zeros((0, 1))
    stacked = np.concatenate(out)
    vectors = np.empty_like(stacked)
    vectors[order] = stacked
    return vectors


# ---------------------------------------------------------------------------------------------
# classification


def _logistic(multi_label: bool, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = LogisticRegression(C=c, max_iter=2000)
    return OneVsRestClassifier(model) if multi_label else model


def _targets(rows: list[dict[str, Any]], labels: list[str], multi_label: bool) -> Any:
    from sklearn.preprocessing import MultiLabelBinarizer

    if multi_label:
        return MultiLabelBinarizer(classes=labels).fit_transform([r["labels"] for r in rows])
    return [r["label"] for r in rows]


def _decode(predicted: Any, labels: list[str], multi_label: bool) -> list[Any]:
    if multi_label:
        return [[label for label, on in zip(labels, row) if on] for row in np.asarray(predicted).tolist()]
    return [str(p) for p in predicted]


def tfidf_predictions(train: list[dict[str, Any]], test: list[str], labels: list[str], multi_label: bool) -> list[Any]:
    """TF-IDF of word 1-2 grams (sublinear term frequency) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), _logistic(multi_label, 10.0))
    pipeline.fit([r["text"] for r in train], _targets(train, labels, multi_label))
    return _decode(pipeline.predict(test), labels, multi_label)


def fit_probe(vectors: np.ndarray, rows: list[dict[str, Any]], labels: list[str], multi_label: bool) -> Any:
    """The embedding baseline's logistic regression on `vectors` of `rows`; single-label targets are label
    indices, so its classes are rows of a head over `labels` (`ship.ship_baseline`)."""
    targets = _targets(rows, labels, multi_label)
    if not multi_label:
        index = {label: i for i, label in enumerate(labels)}
        targets = [index[t] for t in targets]
    return _logistic(multi_label, 10.0).fit(vectors, targets)


def probe_predictions(ctx: EvalContext, train: list[dict[str, Any]], test: list[str], multi_label: bool) -> list[Any]:
    """Logistic regression on the frozen base encoder's embeddings (its own pooling)."""
    task = ctx.task
    vectors = embed_texts(
        ctx.base_path, [r["text"] for r in train] + test, task.train.max_length, task.eval.batch_size, task.trust_remote_code
    )
    predicted = fit_probe(vectors[: len(train)], train, ctx.labels, multi_label).predict(vectors[len(train) :])
    return _decode(predicted if multi_label else [ctx.labels[int(i)] for i in predicted], ctx.labels, multi_label)


def _indicators(values: list[Any], labels: list[str]) -> np.ndarray:
    from sklearn.preprocessing import MultiLabelBinarizer

    return MultiLabelBinarizer(classes=labels).fit_transform([v if isinstance(v, list) else [v] for v in values])


def label_scores(truth: list[Any], preds: list[Any], labels: list[str]) -> dict[str, float]:
    """Accuracy (exact label set), macro and weighted F1 over one-hot or multi-hot label rows."""
    from sklearn.metrics import f1_score

    y, p = _indicators(truth, labels), _indicators(preds, labels)
    return {
        "accuracy": float((y == p).all(1).mean()) if len(y) else 0.0,
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, p, average="weighted", zero_division=0)),
    }


def label_intervals(truth: list[Any], baseline: list[Any], tuned: list[Any], labels: list[str]) -> dict[str, list[float]]:
    """Paired bootstrap intervals of tuned minus the baseline for each of `label_scores`."""
    y, b, t = _indicators(truth, labels), _indicators(baseline, labels), _indicators(tuned, labels)
    out = {"accuracy": list(paired_bootstrap(len(y), mean_metric((b == y).all(1), (t == y).all(1))))}
    for name, average in (("macro_f1", "macro"), ("weighted_f1", "weighted")):

        def metric(idx: np.ndarray, average: str = average) -> tuple[float, float]:
            from sklearn.metrics import f1_score

            return (
                float(f1_score(y[idx], b[idx], average=average, zero_division=0)),
                float(f1_score(y[idx], t[idx], average=average, zero_division=0)),
            )

        out[name] = list(paired_bootstrap(len(y), metric, resamples=300))
    return out


def classification_baselines(ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """TF-IDF + LR and a linear probe on the frozen encoder, against the tuned classifier's predictions."""
    from tuneloom.pooled_head import model_pooling

    multi = ctx.task.data.multi_label
    test = [r["text"] for r in ctx.rows]

    def fit() -> Fitted:
        train = _train_rows(ctx)
        return {
            "tfidf_logreg": _timed(
                "TF-IDF (word 1-2 grams) + logistic regression",
                lambda: tfidf_predictions(train, test, ctx.labels, multi),
            ),
            "embedding_logreg": _timed(
                f"logistic regression on frozen {Path(ctx.base_path).name} embeddings ({model_pooling(ctx.base_path)[0]} pooling)",
                lambda: probe_predictions(ctx, train, test, multi),
            ),
        }

    settings = {
        "kind": "classification",
        "multi_label": multi,
        "base": str(ctx.base_path),
        "max_length": ctx.task.train.max_length,
    }
    truth = [r["labels"] if multi else r["label"] for r in ctx.rows]
    tuned = [e["tuned"] for e in scored["examples"]]
    return {
        name: _scored(b, lambda p: label_scores(truth, p, ctx.labels), lambda p: label_intervals(truth, p, tuned, ctx.labels))
        for name, b in cached(ctx, settings, fit).items()
    }


def _scored(
    fitted: dict[str, Any], score: Callable[[list[Any]], dict[str, float]], intervals: Callable[[list[Any]], dict[str, Any]]
) -> dict[str, Any]:
    """A fitted baseline's predictions -> {method, metrics, intervals (tuned minus it), seconds}."""
    if "skipped" in fitted:
        return {"skipped": fitted["skipped"]}
    preds = fitted["predictions"]
    return {"method": fitted["method"], "metrics": score(preds), "intervals": intervals(preds), "seconds": fitted["seconds"]}


# ---------------------------------------------------------------------------------------------
# chat: nearest-neighbour answers


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_neighbours(questions: list[str], queries: list[str]) -> list[int]:
    """Index of the most similar training question for each query, by BM25 (Okapi, rank_bm25)."""
    from rank_bm25 import BM25Okapi

    index = BM25Okapi([_words(q) or ["_"] for q in questions])
    return [int(np.argmax(index.get_scores(_words(q)))) for q in queries]


def embedding_neighbours(questions: list[str], queries: list[str], max_length: int, batch_size: int) -> list[int]:
    """Index of the most similar training question for each query, by cosine of MiniLM sentence embeddings."""
    from tuneloom.catalog import resolve_model

    vectors = embed_texts(resolve_model(EMBEDDER), questions + queries, max_length, batch_size)
    return (vectors[len(questions) :] @ vectors[: len(questions)].T).argmax(1).tolist()


def chat_baselines(ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The answer of the most similar training question (what a FAQ search returns), by BM25 and by embedding."""
    queries = [r["messages"][-2]["content"] for r in ctx.rows]

    def fit() -> Fitted:
        train = _train_rows(ctx)
        questions = [r["messages"][-2]["content"] for r in train]
        answers = [r["messages"][-1]["content"] for r in train]

        def answer(neighbours: Callable[[], list[int]]) -> Callable[[], list[str]]:
            return lambda: [answers[i] for i in neighbours()]

        return {
            "nearest_bm25": _timed(
                "answer of the most similar training question (BM25)", answer(lambda: bm25_neighbours(questions, queries))
            ),
            "nearest_embedding": _timed(
                f"answer of the most similar training question ({EMBEDDER} embeddings)",
                answer(lambda: embedding_neighbours(questions, queries, ctx.task.train.max_length, ctx.task.eval.batch_size)),
            ),
        }

    refs = [r["messages"][-1]["content"] for r in ctx.rows]
    tuned = per_example_scores([e["tuned"] for e in scored["examples"]], refs)

    def intervals(preds: list[str]) -> dict[str, Any]:
        each = per_example_scores(preds, refs)
        return {k: list(paired_bootstrap(len(refs), mean_metric(each[k], tuned[k]))) for k in each}

    fitted = cached(ctx, {"kind": "chat", "embedder": EMBEDDER}, fit)
    return {name: _scored(b, lambda p: mean_scores(per_example_scores(p, refs)), intervals) for name, b in fitted.items()}


# ---------------------------------------------------------------------------------------------
# ner: a gazetteer


def gazetteer(train: list[dict[str, Any]]) -> dict[str, str]:
    """Entity text -> its most frequent label in the training rows."""
    seen: dict[str, Counter[str]] = {}
    for row in train:
        for span in row["entities"]:
            seen.setdefault(row["text"][span["start"] : span["end"]], Counter())[span["label"]] += 1
    return {text: counts.most_common(1)[0][0] for text, counts in seen.items() if text.strip()}


def gazetteer_spans(entries: dict[str, str], text: str) -> list[dict[str, Any]]:
    """Exact, whole-word matches of the gazetteer's entries in `text`, longest first, without overlaps."""
    if not entries:
        return []
    names = sorted(entries, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)")
    return [{"start": m.start(), "end": m.end(), "label": entries[m.group()]} for m in pattern.finditer(text)]


def ner_baselines(ctx: EvalContext, scored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tag every exact occurrence of a training entity; scored with the models' tokens and strict IOB2 F1."""
    from tuneloom.train import ner

    def fit() -> Fitted:
        entries = gazetteer(_train_rows(ctx))
        return {
            "gazetteer": _timed(
                "exact match of the training entities", lambda: [gazetteer_spans(entries, r["text"]) for r in ctx.rows]
            )
        }

    tags = ner.tag_names(ctx.labels)
    tokenizer = ner.load_tokenizer(ctx.model_dir, ctx.task.trust_remote_code)

    def token_tags(rows: list[dict[str, Any]]) -> list[list[str]]:
        encoded, _ = ner.encode_split(tokenizer, rows, tags, ctx.task.train.max_length)
        return [[tags[t] for t in e["labels"] if t != ner.IGNORE] for e in encoded]

    truth = token_tags(ctx.rows)
    tuned_exact = [e["score_tuned"] for e in scored["examples"]]

    def score(spans: list[list[dict[str, Any]]]) -> dict[str, float]:
        found = ner_scores(truth, token_tags([{**r, "entities": s} for r, s in zip(ctx.rows, spans)]))
        return {"entity_f1": found["f1"], "entity_precision": found["precision"], "entity_recall": found["recall"]}

    def intervals(spans: list[list[dict[str, Any]]]) -> dict[str, Any]:
        preds = token_tags([{**r, "entities": s} for r, s in zip(ctx.rows, spans)])
        exact = [float(p == t) for p, t in zip(preds, truth)]
        return {"sentence_exact": list(paired_bootstrap(len(exact), mean_metric(exact, tuned_exact)))}

    fitted = cached(ctx, {"kind": "ner", "labels": ctx.labels}, fit)
    return {name: _scored(b, score, intervals) for name, b in fitted.items()}


# ---------------------------------------------------------------------------------------------
# choosing


def best_baseline(
    baselines: dict[str, dict[str, Any]] | None, metric: str, exclude: str | None = None
) -> tuple[str, float] | None:
    """(name, value) of the baseline best on `metric` (`exclude`: the one the evaluated model is), or None when
    no baseline measured it."""
    from tuneloom.tasks import lower_is_better

    measured = [
        (name, float(b["metrics"][metric]))
        for name, b in (baselines or {}).items()
        if metric in b.get("metrics", {}) and name != exclude
    ]
    if not measured:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(measured, key=lambda item: item[1])
