"""The exception hierarchy and the one table that maps it to exit codes."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    CHAPTERS_FAILED = 1
    BAD_INPUT = 2
    INCOMPLETE = 3
    LOCKED = 4
    INTERRUPTED = 130


class ImaginizeError(Exception):
    """Base of every error the CLI reports as one line instead of a traceback."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class BookError(ImaginizeError):
    """The EPUB cannot be read as a book: names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Incomplete(ImaginizeError):
    """The run ended with selected chapters neither done nor failed."""

    exit_code = ExitCode.INCOMPLETE


class ServerPaused(ImaginizeError):
    """The server asked everyone on the key to wait longer than --max-wait: the run stops
    with its chapters given back (none failed), to be re-run after the time it named."""

    exit_code = ExitCode.INCOMPLETE


class ConfigError(ImaginizeError):
    """Bad options, settings or environment."""


class ProviderError(ImaginizeError):
    """An analysis request failed. `retryable` says whether trying again can help."""

    exit_code = ExitCode.CHAPTERS_FAILED

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        self.retryable = retryable
        # Seconds the server asked us to wait (Retry-After and kin), when it said.
        self.retry_after = retry_after
        super().__init__(message)


class ServerUnreachable(ProviderError):
    """The server could not be reached (connection refused or reset: a local server
    restarting). Not the chapter's fault: it is given back without spending an attempt, and
    every process on the key waits and tries again, up to --max-wait in all."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class AuthenticationError(ProviderError):
    """The API key was refused: the whole run stops rather than burn through the book."""

    exit_code = ExitCode.BAD_INPUT


class LockTimeout(ImaginizeError):
    """The manifest lock could not be taken in time."""

    exit_code = ExitCode.LOCKED


class ManifestError(ImaginizeError):
    """The manifest is unreadable or belongs to a different book."""
