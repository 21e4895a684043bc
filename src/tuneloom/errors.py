"""Errors meant for the user: the CLI prints their message (no traceback) and exits with code 2."""


class TuneloomError(Exception):
    """Base class: the message says what is wrong and what to do."""


class ProjectFileError(TuneloomError):
    """A project file or override that cannot be used."""


class DataError(TuneloomError):
    """Input data that cannot be used; names the file, the place and the fix."""


class ModelNotAvailable(TuneloomError):
    """A model reference that cannot be resolved to local weights."""
