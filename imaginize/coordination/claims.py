"""Working on one claimed unit (a chapter or an image): keeping the claim alive while the
work runs, giving up on work past its deadline, and recording a failure."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
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


class StopFlag:
    """How a worker is asked to stop: set by its signal handlers, its lifeline thread and a
    caller in the same process; polled by its waits (`within`, the idle nap) and checked by
    the loop before each claim. Setting it only assigns attributes: nothing is raised into
    the interrupted code, and a second signal landing inside the first handler finds
    nothing half done."""

    def __init__(self) -> None:
        # Claim nothing more (the unit in hand is finished and published first) ...
        self.requested = False
        # ... and give the unit in hand back at once instead.
        self.at_once = False

    def finish_and_leave(self) -> None:
        """Fewer workers wanted (--concurrent auto shrinking): finish the unit, then leave."""
        self.requested = True

    def stop_now(self) -> None:
        """SIGTERM, or the launcher gone: give the unit in hand back and leave."""
        self.requested = True
        self.at_once = True


class Abandoned(Exception):
    """`within` gave the work up because the worker was told to stop at once: its caller
    gives the claim back without counting the attempt."""


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


# How soon work in hand is given up once a stop asks for it: `within` looks this often.
STOP_POLL = 0.05


def within(
    seconds: float | None,
    work: Callable[[], T],
    name: str,
    cancel: threading.Event | None = None,
    stop: StopFlag | None = None,
) -> T:
    """`work()`, run in a thread so that work past its deadline (`seconds`; None: none), or
    stopped (`stop.at_once`: `Abandoned`), is given up on without waiting for it. The thread's
    cancel token is set then (and may be set earlier by the caller, e.g. when the claim is
    lost), so the abandoned work sends no further request."""
    if stop is not None and stop.at_once:
        raise Abandoned(name)  # not even started: a stopping worker sends no new request
    outcome: list[T | BaseException] = []
    token = cancel or threading.Event()

    def target() -> None:
        bind(token)
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    deadline = math.inf if seconds is None else time.monotonic() + seconds
    try:
        while thread.is_alive() and not (stop is not None and stop.at_once):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            thread.join(min(left, STOP_POLL))
    finally:
        # Decided before the token is set: its cut-offs shut the work's connection, and the
        # error that makes the work end with must not count as the unit's own failure.
        finished = bool(outcome)
        if not finished:  # given up (or a library caller's Ctrl-C): the work stops spending
            token.set()
    if not finished:
        if stop is not None and stop.at_once:
            raise Abandoned(name)
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
