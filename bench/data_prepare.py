"""Benchmark `tuneloom data prepare` against a straightforward reference pipeline on the same rows.

Generates helpdesk tickets (default 200,000) with planted exact duplicates, near duplicates (the
same message re-sent with another greeting and sign-off) and planted personal data, then runs

- ours: `prepare_dataset` (worker processes on every core, batched MinHash with xxhash),
- the baseline: pandas plus datasketch row by row (a new MinHash per row, `update` per shingle,
  LSH query and insert), the same cleaning, redaction patterns and split rules, one process,

and prints as its last line one JSON object: rows, seconds, rows_per_s, near_dup_recall,
pii_recall, baseline_seconds, baseline_rows_per_s, ratio. Token statistics are switched off in
both (the baseline has no tokenizer step). Usage: python bench/data_prepare.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tuneloom.config import CleanConfig, DataConfig, load_project
from tuneloom.data import prepare_dataset
from tuneloom.data.clean import Cleaner, dedup_key
from tuneloom.data.redact import Redactor, luhn_ok
from tuneloom.workspace import read_jsonl

QUEUES = ["tech_support", "billing", "shipping", "returns", "account_access", "sales", "warranty", "privacy"]
PRODUCTS = ["Cam Outdoor", "Doorbell Pro", "Hub 2", "Thermo", "Smart Plug", "Motion Sensor", "Chime Kit", "Siren"]
OPENERS = ["Hi", "Hello", "Dear support", "Good morning", "Hey team", "Hi there", "Dear Acme", "Hello Acme team"]
CLOSERS = ["Thanks", "Regards", "Cheers", "Best wishes", "Kind regards", "Many thanks", "Thank you", "Best"]
FIRST = ["Anna", "Ben", "Chloe", "David", "Ewa", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena", "Marta", "Noah"]
LAST = ["Smith", "Weber", "Novak", "Okafor", "Rossi", "Silva", "Tanaka", "Dubois", "Kowalski", "Murphy", "Haddad"]
SENTENCES = [
    "My {p} stopped working after the update on {d} and the light keeps blinking {c}.",
    "I ordered a {p} with order ACM-{n} and it has not arrived after {k} days.",
    "The app says the {p} is offline although the router is {k} metres away.",
    "I was charged twice for the {p} subscription this month, {k} pounds each time.",
    "Can I return the {p} I bought on {d}, it is still in the box.",
    "Which {p} works with a {c} doorbell transformer in an old house?",
    "The {p} battery drains in {k} days instead of the months you advertise.",
    "Please delete all recordings of my {p} older than {k} days under GDPR.",
    "I cannot log in since I changed phones and the code never arrives for the {p}.",
    "The courier left the {p} parcel at the wrong door on {d} and took a photo of it.",
    "Is there a discount for {k} units of the {p} for our {c} office?",
    "My {p} makes a clicking noise at night and the warranty card says {k} years.",
]
COLORS = ["red", "blue", "green", "amber", "white", "orange"]


def _iban(rng: random.Random) -> str:
    bban = "WEST" + "".join(str(rng.randrange(10)) for _ in range(14))
    check = 98 - int("".join(str(int(ch, 36)) for ch in bban + "GB00")) % 97
    raw = f"GB{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    check = next(d for d in range(10) if luhn_ok("".join(map(str, digits + [d]))))
    s = "".join(map(str, digits + [check]))
    return " ".join(s[i : i + 4] for i in range(0, 16, 4))


def _pii(rng: random.Random, first: str, last: str) -> tuple[str, str]:
    kind = rng.choice(["email", "phone", "intl_phone", "iban", "card", "ip", "postcode"])
    value = {
        "email": lambda: f"{first.lower()}.{last.lower()}{rng.randrange(100)}@mail.example",
        "phone": lambda: f"07700 900 {rng.randrange(1000):03d}",
        "intl_phone": lambda: f"+44 20 7946 {rng.randrange(10000):04d}",
        "iban": lambda: _iban(rng),
        "card": lambda: _card(rng),
        "ip": lambda: f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "postcode": lambda: (
            f"{rng.choice(['LS', 'M', 'EH', 'BS', 'SW'])}{rng.randrange(1, 20)} {rng.randrange(10)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
        ),
    }[kind]()
    phrase = {
        "email": "You can reach me at {v}.",
        "phone": "Call me on {v} please.",
        "intl_phone": "My number is {v}.",
        "iban": "Refund to my account {v} please.",
        "card": "The card I used is {v}.",
        "ip": "My public IP is {v} if that helps.",
        "postcode": "I live in Leeds {v} near the station.",
    }[kind]
    return phrase.format(v=value), value


def generate(n: int, seed: int = 7) -> tuple[pd.DataFrame, list[int], list[list[str]]]:
    """Rows, the indices of planted near duplicates, and the planted personal data per row."""
    rng = random.Random(seed)
    texts, labels, pii, near = [], [], [], []
    while len(texts) < n:
        r = rng.random()
        if texts and r < 0.03:  # exact duplicate: case and spacing changed
            i = rng.randrange(len(texts))
            texts.append("  " + texts[i].upper().replace(" ", "  "))
            labels.append(labels[i])
            pii.append(pii[i])
            continue
        if texts and r < 0.08:  # near duplicate: re-sent with another greeting and sign-off
            i = rng.randrange(len(texts))
            words = texts[i].split(" ")
            words[0] = rng.choice([o for o in OPENERS if o.split()[0] != words[0]]).split()[0] + ","
            words[-1] = rng.choice(FIRST) + "!"
            near.append(len(texts))
            texts.append(" ".join(words))
            labels.append(labels[i])
            pii.append(pii[i])
            continue
        first, last = rng.choice(FIRST), rng.choice(LAST)
        product = rng.choice(PRODUCTS)
        body = " ".join(
            s.format(
                p=product,
                d=f"{rng.randrange(1, 28)} March",
                c=rng.choice(COLORS),
                n=rng.randrange(10**5, 10**6),
                k=rng.randrange(2, 60),
            )
            for s in rng.sample(SENTENCES, 3)
        )
        planted = []
        if rng.random() < 0.4:
            phrase, value = _pii(rng, first, last)
            body += " " + phrase
            planted.append(value)
        texts.append(f"{rng.choice(OPENERS)}, {body} {rng.choice(CLOSERS)}, {first} {last}")
        labels.append(rng.choice(QUEUES))
        pii.append(planted)
    return pd.DataFrame({"text": texts, "queue": labels}), near, pii


PROJECT = """\
project: bench
workspace: workspace
tasks:
  - name: tickets
    type: classification
    model: all-minilm-l6-v2
    data:
      sources: [{path: tickets.csv}]
      columns: {text: text, label: queue}
      redact: {enabled: true}
      token_stats: false
      workers: %d
"""


def baseline(csv_path: Path, data: DataConfig, out: Path) -> int:
    """The straightforward pipeline: pandas, then per row clean, dedup (datasketch, row by row), redact, split."""
    from datasketch import MinHash, MinHashLSH

    from tuneloom.data.split import split_examples

    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    cleaner, redactor = Cleaner(CleanConfig()), Redactor(list(data.redact.types))
    lsh = MinHashLSH(threshold=data.dedup.threshold, num_perm=data.dedup.num_perm)
    seen, kept, rejects, store = set(), [], [], {}
    for i, row in frame.iterrows():
        text = cleaner.text(row["text"])
        if not text or cleaner.problem(text):
            rejects.append(i)
            continue
        key = dedup_key(text)
        if key in seen:
            rejects.append(i)
            continue
        m = MinHash(num_perm=data.dedup.num_perm)
        words = key.split()
        for j in range(max(1, len(words) - data.dedup.shingle + 1)):
            m.update(" ".join(words[j : j + data.dedup.shingle]).encode("utf8"))
        if any(m.jaccard(other) >= data.dedup.threshold for other in (store[k] for k in lsh.query(m))):
            rejects.append(i)
            continue
        seen.add(key)
        lsh.insert(str(i), m)
        store[str(i)] = m
        (redacted,), _, _ = redactor.example([text])
        kept.append({"text": redacted, "label": row["queue"], "source": f"row {i + 1}"})
    splits = split_examples(kept, data.split)
    for name, rows in splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    frame, near, pii = generate(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame.to_csv(root / "tickets.csv", index=False)
        (root / "tuneloom.yaml").write_text(PROJECT % args.workers)
        project = load_project(root)
        start = time.perf_counter()
        ds = prepare_dataset(project, "tickets")
        seconds = time.perf_counter() - start
        rejects = {r["location"]: r["reason"] for r in read_jsonl(Path(ds.path) / "rejects.jsonl")}
        caught = sum(1 for i in near if rejects.get(f"tickets.csv:row {i + 1}") in ("near_duplicate", "exact_duplicate"))
        outputs = {}
        for split in ("train", "validation", "test"):
            for r in read_jsonl(Path(ds.path) / f"{split}.jsonl"):
                outputs[int(r["source"].rsplit(" ", 1)[1]) - 1] = r["text"]
        planted = [(i, v) for i in outputs for v in pii[i]]
        redacted = sum(1 for i, v in planted if v not in outputs[i])
        (root / "baseline").mkdir()
        start = time.perf_counter()
        baseline(root / "tickets.csv", project.config.tasks[0].data, root / "baseline")
        base_seconds = time.perf_counter() - start
    print(
        f"ours: {ds.counts}, near-duplicates planted {len(near)}, personal data planted in kept rows {len(planted)}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "rows": args.rows,
                "workers": args.workers,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
                "near_dup_recall": round(caught / max(len(near), 1), 4),
                "pii_recall": round(redacted / max(len(planted), 1), 4),
                "baseline_seconds": round(base_seconds, 2),
                "baseline_rows_per_s": round(args.rows / base_seconds),
                "ratio": round(base_seconds / seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
