"""The locks: the manifest's, a thin wrapper over `filelock.SoftFileLock`, and the pace's, a
kernel lock.

Guarantees (filelock's, see manifest-format.md): the lock file is created with O_CREAT|O_EXCL
and records the holder's pid, host and process start token. A waiting process breaks it at
once when that names a process on this host that no longer runs, and breaks it by age once it
is older than `lifetime` whatever the holder; a break is an atomic rename-exchange, so of two
processes that judge one lock stale only one takes it.

Limits: age-based expiry can overlap a holder that is alive but frozen for longer than
`lifetime` (a stopped process, a suspended laptop). imaginize's critical sections last
milliseconds, so the default 10 minutes makes that a holder that is not making progress anyway.
A holder on another host is never judged dead, only aged out.

A wait for a lock that is neither freed nor provably stale (an empty lock file, a live pid
recorded without a process start token) would last the whole lifetime; after `REPORT_AFTER`
seconds of waiting, the listener set with `reporting_waits` is told once who holds it, for how
long, and when it will be broken.

The request pace (`pacing.py`) is advice, not a record of work, and its critical sections are
taken twice per request, so it uses the cheaper `filelock.FileLock` (flock on POSIX): the
kernel releases it when its holder dies, so it is never stale and never needs breaking.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock, SoftFileLockLifetimeWarning, Timeout

from imaginize.errors import LockTimeout
from imaginize.settings import DEFAULT_LOCK_LIFETIME

POLL_INTERVAL = 0.005
# Critical sections last milliseconds: a lock still held after this long is worth a word.
REPORT_AFTER = 3.0

# Who hears about a long lock wait in this thread (`reporting_waits`); none by default.
_listener: ContextVar[Callable[[str], None] | None] = ContextVar("lock_listener", default=None)


def manifest_lock(path: Path, lifetime: float = DEFAULT_LOCK_LIFETIME) -> SoftFileLock:
    with warnings.catch_warnings():
        # Age-based expiry is what we want (a holder frozen for 10 minutes must not block the
        # book); the warning is about exactly that trade-off, documented above.
        warnings.simplefilter("ignore", SoftFileLockLifetimeWarning)
        return SoftFileLock(
            path, lifetime=lifetime, poll_interval=POLL_INTERVAL, thread_local=False
        )


def pace_lock(path: Path) -> FileLock:
    # Thread-local (filelock's default): each thread opens its own descriptor, and flock
    # excludes descriptors of one process from each other, so an abandoned analysis thread
    # still finishing its request and the next one cannot share the critical section.
    return FileLock(path, poll_interval=POLL_INTERVAL)


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    host: str | None
    age: float
    # Whether the holder recorded its process start token, by which filelock tells a live
    # holder from a new process that reuses a dead one's pid.
    started: bool = True
    empty: bool = False

    def describe(self) -> str:
        if self.empty:
            return f"an empty lock file, {self.age:.0f}s old (its writer left no name)"
        who = f"pid {self.pid} on {self.host}" if self.pid else "an unknown process"
        if self.pid and not self.started:
            who += " (running, but with no start token it cannot be told from a reused pid)"
        return f"held by {who} for {self.age:.0f}s"


def lock_holder(path: Path, now: float | None = None) -> LockHolder | None:
    """Who holds the lock file, or None when there is none."""
    try:
        stat = os.stat(path)
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return None
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    host = lines[1] if len(lines) > 1 else None
    age = (now if now is not None else time.time()) - stat.st_mtime
    return LockHolder(pid, host, age, started=len(lines) > 2, empty=not "".join(lines).strip())


@contextmanager
def reporting_waits(say: Callable[[str], None]) -> Iterator[None]:
    """While inside, a lock wait in this thread longer than `REPORT_AFTER` is told to `say`
    in one line (once per wait): who holds the lock, and when it will be broken by age."""
    reset = _listener.set(say)
    try:
        yield
    finally:
        _listener.reset(reset)


def _report_wait(lock: SoftFileLock, waited: float) -> None:
    say = _listener.get()
    if say is None:
        return
    path = Path(lock.lock_file)
    holder = lock_holder(path)
    detail = holder.describe() if holder else "held by another process"
    lifetime = getattr(lock, "lifetime", None)
    if holder is not None and lifetime:
        detail += f"; taken over when {lifetime:g}s old, in {max(0.0, lifetime - holder.age):.0f}s"
    say(f"waiting {waited:.0f}s for the lock {path}: {detail}")


def break_lock(path: Path) -> bool:
    """Remove the lock file whoever holds it (the user's `imaginize unlock`)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def acquire(lock: BaseFileLock, timeout: float) -> None:
    try:
        told = _listener.get() is not None and isinstance(lock, SoftFileLock)
        if told and timeout > REPORT_AFTER:
            try:
                lock.acquire(timeout=REPORT_AFTER)
            except Timeout:
                _report_wait(lock, REPORT_AFTER)
                lock.acquire(timeout=timeout - REPORT_AFTER)
        else:
            lock.acquire(timeout=timeout)
    except Timeout:
        if not isinstance(lock, SoftFileLock):
            # A kernel lock records no holder and dies with it: someone alive is holding it.
            raise LockTimeout(
                f"{lock.lock_file}: could not take the lock in {timeout:g}s "
                "(held by another running process)"
            ) from None
        holder = lock_holder(Path(lock.lock_file))
        detail = holder.describe() if holder else "held by another process"
        raise LockTimeout(
            f"{lock.lock_file}: could not take the lock in {timeout:g}s ({detail}); "
            f"if no imaginize is running, `imaginize unlock` removes it"
        ) from None
