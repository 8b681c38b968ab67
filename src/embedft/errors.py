"""The errors a user can fix. The command line prints them as one line and exits with status 2."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: enough for a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class EmbedftError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""


class ConfigError(EmbedftError):
    """The configuration names an unknown key, has a wrong type or an impossible value."""


class DataError(EmbedftError):
    """The data set is missing, unreadable, empty or lacks the configured columns."""


class ModelError(EmbedftError):
    """A model cannot be found or loaded (missing path, hub name with no network, ...)."""


class OutputError(EmbedftError):
    """An output location is unusable (not writable, already holds an earlier run, ...)."""


class TrainingError(EmbedftError):
    """Training cannot go on (e.g. the loss is no longer finite); the last good checkpoint is kept."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: says where the run is and how to resume it, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
