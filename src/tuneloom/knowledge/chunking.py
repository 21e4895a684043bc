"""Structure-following chunking: Markdown headings set the section path, paragraphs and tables are the
units packed into chunks of at most `max_tokens` embedder tokens, with `overlap` tokens carried over.

No config or model is imported here: the caller passes a `TokenCounter` (the embedder's tokenizer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


class TokenCounter(Protocol):
    """The embedder tokenizer's view of text, without special tokens."""

    def count(self, texts: list[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class Piece:
    """A chunk before it becomes a `Chunk`: its section path, text and token count."""

    section: tuple[str, ...]
    text: str
    tokens: int


@dataclass(frozen=True)
class _Block:
    section: tuple[str, ...]
    text: str
    heading: bool = False
    joiner: str = "\n\n"  # what goes before it inside a chunk: a blank line, or a space inside a cut paragraph


def blocks(text: str) -> Iterator[_Block]:
    """Paragraphs, tables and headings in order, each with the heading path it lies under."""
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    table = False

    def flush() -> Iterator[_Block]:
        if lines:
            yield _Block(tuple(t for _, t in path), "\n".join(lines))
            lines.clear()

    for line in text.split("\n"):
        heading = _HEADING.match(line)
        is_table = line.lstrip().startswith("|")
        if heading or not line.strip() or is_table != table:
            yield from flush()
        table = is_table
        if heading:
            level = len(heading.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, heading.group(2))]
            yield _Block(tuple(t for _, t in path), line.strip(), heading=True)
        elif line.strip():
            lines.append(line.rstrip())
    yield from flush()


def _split(text: str, counter: TokenCounter, budget: int) -> list[str]:
    """A block longer than `budget` tokens cut at sentence ends, or at token boundaries inside a long sentence."""
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    out: list[str] = []
    for sentence, n in zip(sentences, counter.count(sentences), strict=True):
        if n <= budget:
            out.append(sentence)
            continue
        out.extend(_windows(sentence, counter.offsets(sentence), budget))
    return out


def _windows(text: str, offsets: list[tuple[int, int]], budget: int) -> Iterator[str]:
    """`text` in pieces of at most `budget` tokens, cut before a word-starting token when there is one."""
    starts = {i for i in range(1, len(offsets)) if offsets[i][0] > offsets[i - 1][1]}
    start = 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        if end < len(offsets):
            end = next((i for i in range(end, start, -1) if i in starts), end)
        yield text[offsets[start][0] : offsets[end - 1][1]]
        start = end


def _tail(text: str, counter: TokenCounter, overlap: int) -> str:
    """The last `overlap` tokens of a chunk's text (the start of the next chunk)."""
    if overlap == 0:
        return ""
    offsets = counter.offsets(text)
    start = len(offsets) - overlap
    while 0 < start < len(offsets) and offsets[start][0] == offsets[start - 1][1]:  # not inside a word
        start += 1
    return text[offsets[start][0] :] if 0 < start < len(offsets) else ""


def _units(text: str, counter: TokenCounter, budget: int) -> list[tuple[_Block, int]]:
    """The blocks with their token counts, blocks over `budget` cut into parts (counted once, in one call)."""
    items = list(blocks(text))
    units: list[tuple[_Block, int | None]] = []
    for block, n in zip(items, counter.count([b.text for b in items]), strict=True):
        if n <= budget:
            units.append((block, n))
        else:
            parts = _split(block.text, counter, budget)
            units.extend((_Block(block.section, part, joiner="\n\n" if i == 0 else " "), None) for i, part in enumerate(parts))
    counts = iter(counter.count([b.text for b, n in units if n is None]))
    return [(b, n if n is not None else next(counts)) for b, n in units]


def chunk_text(text: str, counter: TokenCounter, max_tokens: int, overlap: int) -> list[Piece]:
    """The document's pieces: a new section starts a new chunk; a full chunk continues with `overlap` tokens."""
    pieces: list[tuple[tuple[str, ...], str, int]] = []  # section, text, tokens (-1: count the joined text)
    current: list[str] = []  # texts, each with the joiner before it
    used = 0
    section: tuple[str, ...] = ()
    headings_only = False  # a chunk holding only headings runs on into the section below them
    for unit, n in _units(text, counter, max_tokens - overlap):
        new_section = unit.section != section
        if current and used + n <= max_tokens and new_section and headings_only:
            section = unit.section
        elif current and (new_section or used + n > max_tokens):
            pieces.append((section, "".join(current), used if len(current) == 1 else -1))
            tail = "" if new_section else _tail(pieces[-1][1], counter, overlap)
            current, used = ([tail], overlap) if tail else ([], 0)
        if not current:
            section, headings_only = unit.section, True
        current.append(unit.joiner + unit.text if current else unit.text)
        headings_only = headings_only and unit.heading
        used += n
    if current:
        pieces.append((section, "".join(current), used if len(current) == 1 else -1))
    counts = iter(counter.count([t for _, t, n in pieces if n < 0]))
    return [Piece(s, t, n if n >= 0 else next(counts)) for s, t, n in pieces]
