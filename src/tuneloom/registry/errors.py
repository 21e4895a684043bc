"""Registry errors: each message says what went wrong and what to do."""

from __future__ import annotations

from tuneloom.errors import TuneloomError


class RegistryError(TuneloomError):
    """A registry operation that cannot be done; the message says why and what to do."""


class NotRegistered(RegistryError):
    """The registry holds no model of that name."""


class VersionNotFound(RegistryError):
    """The model is registered, but not the version or alias asked for."""
