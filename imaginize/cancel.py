"""Giving up on work that is already running in another thread.

A unit of work past its deadline runs on in the thread it was started in (Python cannot stop a
thread). `within` marks that thread's token cancelled, and the places that would spend
anything on its behalf (taking a pacer slot, sending a request, starting the next chunk) call
`check()` first, so an abandoned analysis sends nothing more.

What it already holds is let go at once: with a `Token`, setting it also runs the cut-offs the
work registered while it held something (`guarded`, `guard`): the pacer slot of a request under
way is given back, and its connection shut, so that the blocked read returns and the server
sees the request abandoned. A cut-off runs in the thread that cancels (the worker's main
thread at a deadline, the heartbeat thread when the claim is lost), so it must be quick and
safe to run twice; its errors are swallowed (the work is being abandoned anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from imaginize.errors import ProviderError

_local = threading.local()

Cutoff = Callable[[], None]


class Cancelled(ProviderError):
    """The work was given up on (its deadline passed, or its claim was taken over)."""


class Token(threading.Event):
    """A cancel token whose `set()` also runs the cut-offs registered with it."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._cutoffs: dict[int, Cutoff] = {}
        self._next = 0

    def set(self) -> None:
        super().set()
        with self._guard:
            cutoffs = list(self._cutoffs.values())
            self._cutoffs.clear()
        for cut in cutoffs:
            _run(cut)

    def add(self, cut: Cutoff) -> int | None:
        """Register `cut`; a token already set runs it at once (and returns None)."""
        with self._guard:
            if not self.is_set():
                self._next += 1
                self._cutoffs[self._next] = cut
                return self._next
        _run(cut)
        return None

    def discard(self, key: int | None) -> None:
        if key is not None:
            with self._guard:
                self._cutoffs.pop(key, None)


def _run(cut: Cutoff) -> None:
    with suppress(Exception):
        cut()


def bind(token: threading.Event) -> None:
    """Make `token` the current thread's cancel token."""
    _local.token = token
    _local.scopes = []


def check() -> None:
    token: threading.Event | None = getattr(_local, "token", None)
    if token is not None and token.is_set():
        raise Cancelled("given up (past its deadline or taken over)")


@contextmanager
def guarded(cut: Cutoff | None = None) -> Iterator[None]:
    """While inside: if this thread's work is cancelled, `cut` runs at once, and so does
    everything `guard` added inside. Nothing happens without a `Token` bound."""
    token = getattr(_local, "token", None)
    if not isinstance(token, Token):
        yield
        return
    keys: list[int | None] = [token.add(cut)] if cut is not None else []
    _local.scopes.append(keys)
    try:
        yield
    finally:
        _local.scopes.pop()
        for key in keys:
            token.discard(key)


def guard(cut: Cutoff) -> None:
    """Add `cut` to the innermost `guarded` block of this thread, until that block ends (no
    effect outside one): e.g. a connection, when a request is written on it."""
    token = getattr(_local, "token", None)
    scopes: list[list[int | None]] = getattr(_local, "scopes", [])
    if isinstance(token, Token) and scopes:
        scopes[-1].append(token.add(cut))
