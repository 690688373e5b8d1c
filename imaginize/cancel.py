"""Giving up on work that is already running in another thread.

A unit of work past its deadline runs on in the thread it was started in (Python cannot stop a
thread). `within` marks that thread's token cancelled, and the places that would spend
anything on its behalf (taking a pacer slot, sending a request, starting the next chunk) call
`check()` first, so an abandoned analysis sends nothing more.
"""

from __future__ import annotations

import threading

from imaginize.errors import ProviderError

_local = threading.local()


class Cancelled(ProviderError):
    """The work was given up on (its deadline passed, or its claim was taken over)."""


def bind(token: threading.Event) -> None:
    """Make `token` the current thread's cancel token."""
    _local.token = token


def check() -> None:
    token: threading.Event | None = getattr(_local, "token", None)
    if token is not None and token.is_set():
        raise Cancelled("given up (past its deadline or taken over)")
