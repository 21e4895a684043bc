"""Personal data replaced by typed placeholders: <EMAIL_1> is the same token for the same value in one example.

Patterns find e-mails, phone numbers, IBANs (mod-97 checked), card numbers (Luhn checked), IP
addresses, postal codes (UK, Dutch, Canadian, US ZIP+4, five digits before a town name) and ID
numbers (US SSN, UK National Insurance, values labelled as passport/ID/tax numbers). Person
names need a token-classification model (`redact.ner_model`); there is no pattern for them.
Hand-written rather than Presidio: Presidio needs a spaCy model download, which this offline
tool cannot assume; the checksums keep the number patterns precise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.errors import DataError

if TYPE_CHECKING:
    from tuneloom.config import RedactConfig

_CARD_OR_IBAN = re.compile(
    r"\b(?P<iban>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b"
    r"|(?<![\w-])(?P<card>\d(?:[ -]?\d){12,18})(?![\w-])"
)
PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "ip": re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),  # octets checked in code
    "ipv6": re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b"),
    "id_number": re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    "id_labelled": re.compile(
        r"(?i:\b(?:passport|national id|id card|id|ssn|tax id|personal id|vat|vat reg(?:istration)?|ust-idnr|nip|siren|nif)"
        r"\.?(?: (?:no|number|nr)\.?)?\s*[:#]?\s*)"
        r"(?P<value>(?=[A-Z0-9 -]*\d{3})[A-Z0-9](?:[A-Z0-9-]| (?=[A-Z0-9]))*[A-Z0-9])(?![\w-])"
    ),
    "phone": re.compile(
        r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(0\)[ .-]?)?(?:\(?\d{1,5}\)?[ .-]?){1,5}\d{2,5}(?![\w])"
        r"|(?<![\w+])\(?0\d{2,5}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w])"
    ),
    "postal_code": re.compile(
        r"\b(?:GIR ?0AA|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\b"  # UK
        r"|\b\d{4} ?[A-Z]{2}\b(?= [A-Z][a-z])"  # Dutch, before the town
        r"|\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b"  # Canadian
        r"|\b\d{5}-\d{4}\b"  # US ZIP+4
        r"|\b\d{5}\b(?= [A-Z][a-zà-ÿ]+)|\b\d{3} \d{2}\b(?= [A-Z][a-zà-ÿ]+)"  # five digits before a town (DE, FR, CZ...)
    ),
}
_DIGIT = re.compile(r"\d")
_ID_WORDS = ("passport", "ssn", "tax", "vat", "ust-idnr", "nip", "siren", "nif", "id ", "id:", "id#", "id.")


def _steps(text: str) -> list[tuple[str, str]]:
    """(type, pattern name) to run on `text`, in order; cheap tests skip patterns that cannot match."""
    digits = len(_DIGIT.findall(text))
    if not digits:
        return [("email", "email")] if "@" in text else []
    steps = [("email", "email")] if "@" in text else []
    if digits >= 12:
        steps.append(("card_or_iban", ""))
    if digits >= 4 and text.count(".") >= 3:
        steps.append(("ip", "ip"))
    if text.count(":") >= 7:
        steps.append(("ip", "ipv6"))
    if digits >= 6:
        steps.append(("id_number", "id_number"))
        lower = text.lower()
        if any(w in lower for w in _ID_WORDS):
            steps.append(("id_number", "id_labelled"))
    if digits >= 9:
        steps.append(("phone", "phone"))
    steps.append(("postal_code", "postal_code"))
    return steps


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = value.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class Redactor:
    """Replaces personal data in the texts of one example at a time."""

    def __init__(self, types: list[str], person_finder: Callable[[str], list[tuple[int, int]]] | None = None) -> None:
        self.types = set(types)
        self.person_finder = person_finder

    def example(self, texts: list[str]) -> tuple[list[str], Counter[str], list[dict[str, str]]]:
        """The texts with placeholders, counts by type, and (placeholder, original) pairs."""
        mapping: dict[tuple[str, str], str] = {}
        counts: Counter[str] = Counter()
        self._originals: dict[str, str] = {}
        out = [self._text(t, mapping, counts) for t in texts]
        originals = [{"placeholder": p, "original": v} for p, v in self._originals.items()]
        return out, counts, originals

    def _placeholder(self, kind: str, value: str, mapping: dict[tuple[str, str], str], counts: Counter[str]) -> str:
        key = (kind, re.sub(r"[\s().-]", "", value).casefold())
        if key not in mapping:
            n = sum(1 for k in mapping if k[0] == kind) + 1
            mapping[key] = f"<{kind.upper()}_{n}>"
            self._originals[mapping[key]] = value
        counts[kind] += 1
        return mapping[key]

    def _text(self, text: str, mapping: dict[tuple[str, str], str], counts: Counter[str]) -> str:
        if not text:
            return text
        if "person" in self.types and self.person_finder is not None:
            for start, end in sorted(self.person_finder(text), reverse=True):
                text = text[:start] + self._placeholder("person", text[start:end], mapping, counts) + text[end:]
        for kind, name in _steps(text):
            if kind == "card_or_iban":
                if self.types & {"iban", "card"}:
                    text = _CARD_OR_IBAN.sub(lambda m: self._number(m, mapping, counts), text)
            elif kind in self.types:
                text = PATTERNS[name].sub(partial(self._match, kind, mapping=mapping, counts=counts), text)
        return text

    def _number(self, match: re.Match[str], mapping: dict[tuple[str, str], str], counts: Counter[str]) -> str:
        if match.group("iban") and "iban" in self.types and iban_ok(match.group("iban")):
            return self._placeholder("iban", match.group("iban"), mapping, counts)
        card = match.group("card")
        if card and "card" in self.types:
            digits = re.sub(r"\D", "", card)
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                return self._placeholder("card", digits, mapping, counts)
        return match.group(0)

    def _match(self, kind: str, match: re.Match[str], mapping: dict[tuple[str, str], str], counts: Counter[str]) -> str:
        value = match.groupdict().get("value")
        if value:  # a labelled ID: keep the label, replace the number
            start = match.start("value") - match.start()
            return match.group(0)[:start] + self._placeholder(kind, value, mapping, counts)
        if kind == "phone" and not 9 <= sum(ch.isdigit() for ch in match.group(0)) <= 15:
            return match.group(0)
        if kind == "ip" and "." in match.group(0) and any(int(o) > 255 for o in match.group(0).split(".")):
            return match.group(0)
        return self._placeholder(kind, match.group(0), mapping, counts)


def redactor_for(config: RedactConfig) -> Redactor | None:
    """The redactor a `redact:` section asks for (None when it is off); loads the name model if needed."""
    if not config.enabled:
        return None
    finder = load_person_finder(config.ner_model) if "person" in config.types and config.ner_model else None
    return Redactor(list(config.types), finder)


def load_person_finder(model: str) -> Callable[[str], list[tuple[int, int]]]:
    """Character spans of person names, by a local token-classification model (PER / PERSON entities)."""
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(
            f"redact.ner_model '{model}' is not a local model folder with config.json; point it at a "
            f"token-classification model (e.g. a downloaded dslim/bert-base-NER) or drop 'person' from redact.types"
        )
    from transformers import pipeline

    try:
        tagger = pipeline("token-classification", model=str(path), aggregation_strategy="simple")
    except (OSError, ValueError) as exc:
        raise DataError(f"redact.ner_model '{model}': cannot load it as a token-classification model ({exc})") from None

    def find(text: str) -> list[tuple[int, int]]:
        found = tagger(text)
        return [(int(e["start"]), int(e["end"])) for e in found if str(e.get("entity_group", "")).upper() in ("PER", "PERSON")]

    return find


def redact_example(ex: dict[str, Any], redactor: Redactor) -> tuple[Counter[str], list[dict[str, str]]]:
    """Redact every text of one example in place; counts by type and (placeholder, original) pairs."""
    slots = _text_slots(ex)
    texts, counts, pairs = redactor.example([get() for get, _ in slots])
    for (_, put), text in zip(slots, texts):
        put(text)
    return counts, pairs


def _slot(holder: dict[str, Any], key: str) -> tuple[Callable[[], str], Callable[[str], None]]:
    """A getter/setter pair for one text held in `holder[key]`."""
    return (lambda: holder[key]), (lambda v: holder.__setitem__(key, v))


def _text_slots(ex: dict[str, Any]) -> list[tuple[Callable[[], str], Callable[[str], None]]]:
    """Getter/setter pairs for every text an example holds (message contents included)."""
    slots: list[tuple[Callable[[], str], Callable[[str], None]]] = []
    for key in ("text",):
        if key in ex:
            slots.append(_slot(ex, key))
    for key in ("messages", "prompt", "chosen", "rejected"):
        for msg in ex.get(key, []) or []:
            if msg.get("role") != "system":
                slots.append(_slot(msg, "content"))
    return slots


def redact_json(values: list[Any], redactor: Redactor) -> list[Any]:
    """Copies of JSON values (a request and its answer, say) with every string redacted as one example,
    so a value keeps its placeholder across them; chat roles are left alone."""
    texts: list[str] = []

    def collect(value: Any, key: str | None = None) -> None:
        if isinstance(value, str) and key != "role":
            texts.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                collect(v, k)
        elif isinstance(value, list):
            for v in value:
                collect(v, key)

    for value in values:
        collect(value)
    replaced = iter(redactor.example(texts)[0])

    def rebuild(value: Any, key: str | None = None) -> Any:
        if isinstance(value, str) and key != "role":
            return next(replaced)
        if isinstance(value, dict):
            return {k: rebuild(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [rebuild(v, key) for v in value]
        return value

    return [rebuild(value) for value in values]
