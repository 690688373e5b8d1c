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

The request pace (`pacing.py`) is advice, not a record of work, and its critical sections are
taken twice per request, so it uses the cheaper `filelock.FileLock` (flock on POSIX): the
kernel releases it when its holder dies, so it is never stale and never needs breaking.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock, SoftFileLockLifetimeWarning, Timeout

from imaginize.errors import LockTimeout

DEFAULT_LOCK_LIFETIME = 600.0
POLL_INTERVAL = 0.005


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

    def describe(self) -> str:
        who = f"pid {self.pid} on {self.host}" if self.pid else "an unknown process"
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
    return LockHolder(pid, host, (now if now is not None else time.time()) - stat.st_mtime)


def break_lock(path: Path) -> bool:
    """Remove the lock file whoever holds it (the user's `imaginize unlock`)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def acquire(lock: BaseFileLock, timeout: float) -> None:
    try:
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
