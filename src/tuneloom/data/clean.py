"""Cleaning: Unicode and whitespace normalisation, HTML to text, boilerplate rules, quality filters."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from tuneloom.config import BoilerplateRule, CleanConfig
from tuneloom.data.documents import html_to_text

# Control, zero-width and bidirectional formatting characters (U+061C, U+200E/F, U+202A-E, U+2066-9):
# invisible, and bidi overrides can make text read differently from what it holds.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\u061c\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SYMBOL = re.compile(r"[^\w\s]|_")
_HTML = re.compile(r"<(?:p|div|br|html|body|span|a|table|tr|td|li|ul|ol|h[1-6]|b|i|strong|em|font)\b[^>]*>", re.I)

# Tuneloom's built-in rules (data.clean.default_boilerplate): quoted replies, signatures, disclaimers.
DEFAULT_BOILERPLATE = [
    BoilerplateRule(pattern=r"^On .{1,200}wrote:\s*$", action="cut_from"),
    BoilerplateRule(pattern=r"^-{3,}\s*Original Message\s*-{3,}", action="cut_from"),
    BoilerplateRule(pattern=r"^>.*$", action="remove"),
    BoilerplateRule(pattern=r"^-- ?$", action="cut_from"),
    BoilerplateRule(pattern=r"^Sent from my \w+.*$", action="remove"),
    BoilerplateRule(
        pattern=r"^(?:DISCLAIMER:.*|This (?:e-?mail|message)(?: and any attachments?)? (?:is|are|may be|may contain)"
        r" (?:strictly )?(?:confidential|private).*)$",
        action="remove",
    ),
]


def normalize_text(value: object) -> str:
    """NFC, no control, zero-width or bidi formatting characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def dedup_key(*parts: str) -> str:
    """Case- and whitespace-insensitive key for exact duplicate detection."""
    return "\x1f".join(" ".join(p.casefold().split()) for p in parts)


@dataclass
class Cleaner:
    """A task's cleaning settings with the rules compiled once (picklable for worker processes)."""

    config: CleanConfig
    rules: list[tuple[re.Pattern[str], str]] = field(init=False)

    def __post_init__(self) -> None:
        chosen = list(self.config.boilerplate) + (DEFAULT_BOILERPLATE if self.config.default_boilerplate else [])
        self.rules = [(re.compile(r.pattern, re.M), r.action) for r in chosen]

    def text(self, value: object) -> str:
        """One cell as clean text: HTML to text, normalised, boilerplate removed."""
        text = str(value)
        if self.config.html_to_text and _HTML.search(text):
            text = html_to_text(text)
        text = normalize_text(text)
        if self.rules:
            for pattern, action in self.rules:
                if action == "cut_from":
                    match = pattern.search(text)
                    if match:
                        text = text[: match.start()]
                else:
                    text = pattern.sub("", text)
            text = normalize_text(text)
        return text

    def problem(self, text: str) -> str | None:
        """Why a text fails the quality filters (a reject reason), or None."""
        if not text:
            return None
        if len(_SYMBOL.findall(text)) / len(text) > self.config.max_symbol_ratio:
            return "mostly_symbols"
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) >= 4 and 1 - len(set(lines)) / len(lines) > self.config.max_repeated_line_ratio:
            return "repeated_lines"
        if self.config.languages:
            language = detect_language(text)
            if language not in self.config.languages:
                return "language_not_allowed"
        return None


def detect_language(text: str) -> str:
    """ISO 639-1 code by langdetect (seeded, so the same text always gets the same answer)."""
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    try:
        return detect(text[:2000])
    except LangDetectException:
        return "unknown"
