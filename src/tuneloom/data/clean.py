"""Text normalisation shared by every task."""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200c\u200d\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(value: object) -> str:
    """NFC, no control or zero-width characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def dedup_key(*parts: str) -> str:
    """Case- and whitespace-insensitive key for exact duplicate detection."""
    return "\x1f".join(" ".join(p.casefold().split()) for p in parts)
