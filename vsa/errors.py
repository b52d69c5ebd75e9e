"""The small exception hierarchy users of vsa see."""

from __future__ import annotations


class VsaError(Exception):
    """Base class: every error vsa raises on purpose derives from it."""


class ConfigError(VsaError, ValueError):
    """A run file is invalid. ``problems`` holds one ``field: message`` line per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))

    def __reduce__(self):  # survive pickling through Ray with its fields intact
        return (type(self), (self.problems, self.source))


class ClusterNotFound(VsaError, ConnectionError):
    """No Ray cluster to connect to."""


class VersionMismatch(VsaError):
    """The running controller executes different code than this client."""


class RunNotFound(VsaError, KeyError):
    """No run with that id or name."""

    def __str__(self) -> str:  # KeyError quotes its message; we don't want that
        return str(self.args[0]) if self.args else "run not found"


class ModelError(VsaError, ValueError):
    """A model cannot be loaded or does not match its configuration."""
