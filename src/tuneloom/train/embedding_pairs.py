"""Training pairs for an embedder: questions linked to the chunk that grounds their answer, user query/passage pairs,
pseudo-queries from the documents' structure, and hard negatives mined over the whole knowledge base.

Everything here works on `Iterable[Chunk]` (the knowledge base's records) and a sentence-transformers model, so it
does not depend on how the knowledge base stores its chunks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneloom.knowledge.records import Chunk

_WORD = re.compile(r"[\w£€$%.,:/-]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    "the a an and or of to in on for is are be it this that with as at by from you your we our can will not no yes".split()
)


def words(text: str) -> list[str]:
    """Lower-cased words with trailing punctuation stripped (prices, times and menu paths stay whole)."""
    return [w for w in (m.group().strip(".,:").lower() for m in _WORD.finditer(text)) if w]


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in _STOP}


def trigram_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of word trigrams (1.0 for two identical texts, including very short ones)."""
    wa, wb = words(a), words(b)
    ga = {tuple(wa[i : i + 3]) for i in range(max(1, len(wa) - 2))}
    gb = {tuple(wb[i : i + 3]) for i in range(max(1, len(wb) - 2))}
    return len(ga & gb) / len(ga | gb) if ga | gb else 1.0


@dataclass
class Pair:
    """A query and the passage that answers it; `chunk_id` is the knowledge-base chunk it points at, when known."""

    query: str
    positive: str
    chunk_id: str | None
    origin: str  # "qa", "passage" or "pseudo"
    row_id: str | None = None


@dataclass
class Linking:
    """The outcome of linking rows to chunks: the pairs made, and the rows left out (id, best score)."""

    pairs: list[Pair] = field(default_factory=list)
    unlinked: list[tuple[str, float]] = field(default_factory=list)


def encode(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)


def link_rows(
    rows: Sequence[dict[str, Any]], chunks: Sequence[Chunk], model: Any, threshold: float, chunk_vectors: np.ndarray | None = None
) -> Linking:
    """Link each row to the chunk that grounds it: the best mean of word overlap and embedding cosine between the
    row's answer (or passage) and the chunk. Rows whose best score is under `threshold` are unlinked."""
    if not chunks:
        raise ValueError("the knowledge base has no chunks: build it before training or evaluating its embedder")
    vectors = encode(model, [c.text for c in chunks]) if chunk_vectors is None else chunk_vectors
    evidence = [r.get("passage") or r.get("answer") or "" for r in rows]
    sims = encode(model, evidence) @ vectors.T
    chunk_words = [content_words(c.text) for c in chunks]
    out = Linking()
    for row, text, cos in zip(rows, evidence, sims):
        wanted = content_words(text)
        lexical = np.array([len(wanted & have) / max(len(wanted), 1) for have in chunk_words])
        scores = (lexical + np.clip(cos, 0, 1)) / 2
        best = int(scores.argmax())
        if scores[best] < threshold:
            out.unlinked.append((str(row.get("id", "")), round(float(scores[best]), 3)))
            continue
        positive = row.get("passage") or chunks[best].text
        origin = "passage" if row.get("passage") else "qa"
        out.pairs.append(Pair(row["query"], positive, chunks[best].chunk_id, origin, str(row.get("id", ""))))
    return out


def _first_sentence(text: str) -> tuple[str, str]:
    """(first sentence, the rest) of a passage, skipping a leading heading line."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()
    parts = _SENTENCE_END.split(body, maxsplit=1)
    return (parts[0].strip(), parts[1].strip()) if len(parts) == 2 else (body, "")


def pseudo_queries(chunks: Iterable[Chunk], min_words: int = 4) -> list[Pair]:
    """Queries from the documents' own structure: each chunk's heading (with its document title) finds the chunk,
    and its first sentence finds the rest of it (the inverse cloze task of Lee et al., 2019)."""
    pairs = []
    for chunk in chunks:
        if chunk.section:
            title = chunk.section[-1] if len(chunk.section) == 1 else f"{chunk.section[0]}: {chunk.section[-1]}"
            pairs.append(Pair(title, chunk.text, chunk.chunk_id, "pseudo"))
        sentence, rest = _first_sentence(chunk.text)
        if len(words(sentence)) >= min_words and len(words(rest)) >= min_words:
            pairs.append(Pair(sentence, rest, chunk.chunk_id, "pseudo"))
    return pairs


def same_document(doc_id: str, file: str) -> bool:
    """Whether a knowledge-base document id (`<source path>/<file>`) is the data source's document `file`."""
    return bool(file) and (doc_id == file or doc_id.endswith("/" + file))


def document_pairs(rows: Sequence[dict[str, Any]], chunks: Sequence[Chunk]) -> Linking:
    """Pseudo-query pairs for document rows (a knowledge base without questions): the chunks of each row's document
    give its pairs; a document the knowledge base does not hold is unlinked."""
    out = Linking()
    for row in rows:
        row_id = str(row.get("id", ""))
        found = pseudo_queries(c for c in chunks if same_document(c.doc_id, row["document"]))
        if not found:
            out.unlinked.append((row_id, 0.0))
        out.pairs.extend(Pair(p.query, p.positive, p.chunk_id, p.origin, row_id) for p in found)
    return out


def _near_duplicate(candidate: str, positive: str, threshold: float) -> bool:
    return candidate == positive or trigram_jaccard(candidate, positive) >= threshold


def mine_negatives(
    pairs: Sequence[Pair], corpus: Sequence[str], model: Any, per_pair: int, duplicate_threshold: float, seed: int
) -> list[dict[str, str]]:
    """(anchor, positive, negative_1..n) rows: sentence-transformers mines the closest chunks of the whole knowledge
    base (skipping any scoring within 5% of the positive, likely unlabelled positives); near-duplicates of the positive
    are then dropped here (the library compares negatives with the query only), and rows left short are topped up with
    random chunks, so every pair is kept and the rows stay rectangular for the trainer."""
    base = [{"anchor": p.query, "positive": p.positive} for p in pairs]
    if per_pair == 0 or not pairs:
        return base
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    mined = mine_hard_negatives(
        Dataset.from_list(base),
        model,
        corpus=list(corpus),
        num_negatives=per_pair + 4,
        relative_margin=0.05,
        output_format="n-tuple",
        verbose=False,
    )
    found: dict[tuple[str, str], list[str]] = {}
    for row in mined:
        found.setdefault((row["anchor"], row["positive"]), [v for k, v in row.items() if k.startswith("negative")])
    rng = random.Random(seed)
    rows = []
    for row in base:
        mined_here = found.get((row["anchor"], row["positive"]), [])
        negatives = [n for n in mined_here if not _near_duplicate(n, row["positive"], duplicate_threshold)][:per_pair]
        for _ in range(100 * per_pair):  # top up with random chunks; bounded, so a corpus of duplicates cannot loop
            if len(negatives) == per_pair:
                break
            candidate = rng.choice(corpus)
            if not _near_duplicate(candidate, row["positive"], duplicate_threshold) and candidate not in negatives:
                negatives.append(candidate)
        if len(negatives) < per_pair:
            raise ValueError(
                f"found only {len(negatives)} of {per_pair} negatives for the query {row['anchor'][:60]!r}: the knowledge "
                f"base has too few distinct chunks; lower embedding.hard_negatives (0 uses in-batch negatives only)"
            )
        rows.append({**row, **{f"negative_{i + 1}": n for i, n in enumerate(negatives)}})
    return rows
