"""Text out of documents: plain text and Markdown, PDF (pypdf), DOCX (python-docx), HTML (BeautifulSoup)."""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path
from typing import NamedTuple

from tuneloom.errors import DataError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Decoded(NamedTuple):
    """A text file's text, the encoding it was read with, and a warning when that encoding is a guess."""

    text: str
    encoding: str
    warning: str | None = None


def _western(text: str) -> bool:
    """Whether a Windows-1252 reading looks like Western text: mostly ASCII letters with some accents.

    Text in another single-byte encoding (Cyrillic, Greek) read as Windows-1252 is nearly all
    accented letters; real Western text has far more plain letters than accented ones.
    """
    letters = sum(1 for ch in text if ch.isalpha())
    accented = sum(1 for ch in text if ord(ch) > 127)
    return letters > 0 and accented / letters <= 0.3


def _guess(path: Path, data: bytes) -> Decoded:
    """Not UTF-8: Windows-1252 when the result reads as Western text, else charset-normalizer's guess (with a warning)."""
    try:
        text = data.decode("cp1252")
        if _western(text):
            return Decoded(text, "cp1252")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 4 << 20]).best()
    if best is None:
        raise DataError(
            f"{path}: this is not a text file (binary content or an unknown encoding); "
            f"export it again as CSV/text, or set `encoding:` on the source if you know it"
        ) from None
    try:
        text = data.decode(best.encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: looks like {best.encoding} but byte {exc.start} does not decode; set `encoding:` on the source"
        ) from None
    warning = (
        f"{path.name}: not UTF-8; the encoding was guessed as {best.encoding}. Check the text in the dataset "
        f"and set `encoding:` on the source if it is wrong"
    )
    return Decoded(text, best.encoding, warning)


def decode_text(path: Path, data: bytes, encoding: str | None = None) -> Decoded:
    """Bytes of a text file as str: the declared encoding, else BOM, UTF-8, Windows-1252 for Western text,
    or charset-normalizer's guess (which comes with a warning)."""
    if encoding:
        try:
            return Decoded(data.decode(encoding), encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataError(
                f"{path}: cannot decode as {encoding} ({exc}); fix `encoding:` on the source or leave it out to detect it"
            ) from None
    decoded = next((Decoded(data.decode(name), name) for bom, name in _BOMS if data.startswith(bom)), None)
    if decoded is None:
        try:
            decoded = Decoded(data.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            decoded = _guess(path, data)
    head = decoded.text[:8192]
    controls = sum(1 for ch in head if ord(ch) < 32 and ch not in "\t\n\r")
    if head and controls / len(head) > 0.02:
        raise DataError(
            f"{path}: this is not a text file ({controls} control characters in the first {len(head)}); check the file"
        )
    return decoded


def read_text(path: Path, encoding: str | None = None) -> Decoded:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror}); check its permissions") from None
    return decode_text(path, data, encoding)


def read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DataError(f"{path}: the PDF is password-protected; save an unprotected copy and point the source at it")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except DataError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DataError(f"{path}: not a readable PDF ({exc}); export it again or remove it") from None


def read_docx(path: Path) -> str:
    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError

    try:
        doc = Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise DataError(f"{path}: not a readable DOCX file ({exc}); save it again from Word as .docx") from None
    parts = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(parts)


_BLOCKS = [
    "p",
    "div",
    "li",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "title",
    "main",
    "aside",
    "form",
]


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page or fragment: block elements become paragraphs, inline ones stay inline;
    scripts, styles and navigation are dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for tag in soup(["script", "style", "noscript", "nav", "template", "head"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    text = soup.get_text()
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def read_html(path: Path, encoding: str | None = None) -> Decoded:
    decoded = read_text(path, encoding)
    return decoded._replace(text=html_to_text(decoded.text))
