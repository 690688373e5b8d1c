"""Working on one claimed unit (a chapter or an image): keeping the claim alive while the
work runs, giving up on work past its deadline, and recording a failure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeVar

from imaginize.cancel import bind
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ImaginizeError, ProviderError
from imaginize.events import ChapterFailed, ChapterRetry, EventSink
from imaginize.model import Usage
from imaginize.pacing.backoff import backoff_delay
from imaginize.safetext import mask_secrets

T = TypeVar("T")


class Stop(BaseException):
    """Raised in a worker's main thread to abandon the chapter in hand (SIGTERM)."""


class Flag:
    """A flag for signal handlers to set. `threading.Event.set` takes a lock that a second
    signal, its handler running in the same thread in the middle of the first `set`, would
    wait on for ever: two SIGTERMs 50-200 µs apart hung a worker with its chapter claimed."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Interrupts:
    """When a stop (SIGTERM) may interrupt a worker's main thread: only while it waits for the
    work on a claimed unit (`waiting()`, in `within`), whose caller gives the claim back on
    Stop. Raised anywhere else, say between a claim and the code that would release it, Stop
    would leave the claim in progress under a dead owner; there a stop is only recorded
    (`requested`), and the worker loop sees it at its next step."""

    def __init__(self) -> None:
        self.requested = Flag()
        self._waiting = False

    def stop(self) -> None:
        """From the SIGTERM handler, in the main thread."""
        self.requested.set()
        if self._waiting:
            # Once: a second SIGTERM (the launcher's lifeline closing too, a service manager
            # signalling every process) must not cut short the release the first one started.
            self._waiting = False
            raise Stop

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self._waiting = True
        try:
            if self.requested.is_set():  # it came just before
                raise Stop
            yield
        finally:
            self._waiting = False


class Heartbeat:
    """Refreshes the claim's heartbeat from a thread while the main thread analyses.

    It uses its own store (its own lock object): filelock's lock objects are re-entrant, so
    sharing one across threads would let both threads into the critical section at once.
    """

    def __init__(
        self,
        store: ManifestStore,
        number: int,
        token: int,
        interval: float,
        on_lost: threading.Event | None = None,
    ) -> None:
        self._store = store
        self._args = (number, token)
        self._interval = interval
        # Set when the claim turns out to be someone else's: the work can stop spending.
        self.lost = on_lost or threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                if not self._store.heartbeat(*self._args):
                    self.lost.set()
                    return
            except (ImaginizeError, OSError):
                continue  # a slow lock or a full disk this round; the lease is many beats long


def within(
    seconds: float,
    work: Callable[[], T],
    name: str,
    cancel: threading.Event | None = None,
    interrupts: Interrupts | None = None,
) -> T:
    """`work()`, run in a thread so that work past its deadline, or stopped (`interrupts`), is
    given up on without waiting for it. The thread's cancel token is set then (and may be set
    earlier by the caller, e.g. when the claim is lost), so the abandoned work sends no
    further request."""
    outcome: list[T | BaseException] = []
    token = cancel or threading.Event()
    if interrupts is not None and interrupts.requested.is_set():
        raise Stop  # not even started: a stopping worker sends no new request

    def target() -> None:
        bind(token)
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        with interrupts.waiting() if interrupts is not None else nullcontext():
            thread.join(seconds)
    except BaseException:
        token.set()
        raise
    if not outcome:
        token.set()
        raise ProviderError(f"timed out after {seconds:g}s", retryable=True)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def record_failure(
    store: ManifestStore,
    claim: mf.Claim,
    max_attempts: int,
    problem: Exception,
    sink: EventSink,
    spent: Usage | None = None,
) -> None:
    """Mark the claimed unit failed, with the tokens the attempt spent. A `ProviderError`
    says whether a retry can help and how long to wait; anything else is a bug met on this
    unit, not worth repeating."""
    if isinstance(problem, ProviderError):
        reason, retryable, wait = str(problem), problem.retryable, problem.retry_after
    else:
        reason, retryable, wait = f"internal error: {problem!r}", False, None
    # The manifest is shared and shown by `status`: no key a server quoted goes into it.
    reason = mask_secrets(reason)
    if wait is None:
        wait = backoff_delay(claim.attempt)
    store.fail(
        claim.number,
        claim.token,
        reason,
        retryable=retryable,
        retry_at=store.clock() + wait,
        spent=(spent.prompt_tokens, spent.completion_tokens) if spent else (0, 0),
    )
    if retryable and claim.attempt < max_attempts:
        sink(ChapterRetry(claim.number, claim.attempt, reason, wait))
    else:
        sink(ChapterFailed(claim.number, reason))
