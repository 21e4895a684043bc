"""Registry URIs: printable without credentials, and local ones as paths."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse


def redact_uri(uri: str) -> str:
    """A URI without user:password@ and query string, safe to print."""
    return re.sub(r"(?<=://)[^/@]*@", "", uri).split("?")[0]


def redact_text(text: str) -> str:
    """A message with user:password@ removed from every URI in it."""
    return re.sub(r"(?<=://)[^/@\s]*@", "", str(text))


def is_local_uri(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def local_path(uri: str) -> Path:
    """The path of a `file:` URI or a plain path."""
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)
