"""What a worker process tells its launcher, over the one-way pipe the launcher gave it.

Every message is a typed object: the launcher acts on its type and fields, never on its text.
Progress does not go this way (the launcher reads it from the manifest); only what the
manifest cannot say does.
"""

from __future__ import annotations

from dataclasses import dataclass

from imaginize.errors import AuthenticationError, ExitCode, ImaginizeError, ServerPaused
from imaginize.events import Notice

# Errors that end the whole run, not just the worker that met them: the launcher stops every
# worker (chapters given back) and raises the error as the run's own.
STOPS_THE_RUN: tuple[type[ImaginizeError], ...] = (AuthenticationError, ServerPaused)


@dataclass(frozen=True)
class Fatal:
    """The worker's last word: it ends with `exit_code` because of `message`."""

    message: str
    exit_code: int
    # A bug met by the worker (not an ImaginizeError).
    internal: bool = False
    # One of STOPS_THE_RUN when the whole run ends with it.
    stops_run: type[ImaginizeError] | None = None

    @classmethod
    def of(cls, error: Exception) -> Fatal:
        if not isinstance(error, ImaginizeError):
            # A bug: the launcher restarts the worker.
            return cls(repr(error), ExitCode.CHAPTERS_FAILED, internal=True)
        stops = next((kind for kind in STOPS_THE_RUN if isinstance(error, kind)), None)
        return cls(str(error), error.exit_code, stops_run=stops)

    def line(self, worker_id: str) -> str:
        """The one line that says it, for stderr or the launcher's notice."""
        what = "internal error" if self.internal else "error"
        return f"imaginize: worker {worker_id}: {what}: {self.message}"

    def error(self) -> ImaginizeError | None:
        """The run's own error when this one ends the run, else None."""
        return None if self.stops_run is None else self.stops_run(self.message)


# A notice (`events.Notice`): a line for the user that only this worker knows (a server's
# context size, a claim taken over); passed on once per run whatever the number of workers.
Message = Notice | Fatal

__all__ = ["STOPS_THE_RUN", "Fatal", "Message", "Notice"]
