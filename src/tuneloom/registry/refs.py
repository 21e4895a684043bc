"""Model names and the references that pick a version: `name`, `name:VERSION`, `name:latest`, `name@ALIAS`."""

from __future__ import annotations

import re

from tuneloom.registry.errors import RegistryError

PRODUCTION = "production"
CANARY = "canary"  # a candidate answering a share of the traffic addressed to production
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """`name` if it is a valid registered-model name; else a RegistryError saying what is allowed."""
    if not _NAME.match(name or ""):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' and '-' (no ':', '@' or '/'), "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`name`, `name:version` (or `name:latest`), `name@alias` -> (name, version, alias)."""
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if not alias:
            raise RegistryError(f"'{ref}': give an alias after '@', e.g. {name}@{PRODUCTION}")
        return check_name(name), None, alias
    if ":" in ref:
        name, _, version = ref.partition(":")
        if not (version.isdigit() or version == "latest"):
            raise RegistryError(f"'{ref}': the version after ':' must be a number or 'latest', e.g. {name}:1")
        return check_name(name), version, None
    return check_name(ref), None, PRODUCTION
