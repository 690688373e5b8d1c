"""The manifest on disk: every read-modify-write under the lock, every write atomic.

`ManifestStore.transact(change)` is the only way the manifest changes: take the lock, read,
apply a pure transition from `manifest.py`, write if anything changed, release. The critical
section does no analysis, network, logging or sleeping. The files (a snapshot and a journal
that a transaction appends one line to) are `journal.py`'s.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol, TypeVar

from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import fsync_dir, sweep_temp_files
from imaginize.coordination.journal import ManifestFiles
from imaginize.coordination.locking import DEFAULT_LOCK_LIFETIME, acquire, manifest_lock
from imaginize.errors import LockTimeout, ManifestError
from imaginize.guides.results import (
    CHAPTERS_DIR,
    CorruptResult,
    Provenance,
    read_result,
    result_path,
)

MANIFEST_NAME = ".imaginize.manifest.json"
JOURNAL_NAME = ".imaginize.manifest.log"
LOCK_NAME = ".imaginize.manifest.lock"

T = TypeVar("T")


class UnitFiles(Protocol):
    """What one kind of unit keeps on disk: its manifest's and lock's names, the folder of its
    results, and what a finished unit leaves behind. `ChapterFiles` for chapters; images have
    theirs (`images.ImageFiles`)."""

    manifest_name: str
    lock_name: str
    results_dir: str

    def finished(
        self, numbers: Iterable[int], ours: Provenance, refused: dict[int, str] | None = None
    ) -> dict[int, int]:
        """Units among `numbers` whose result is on disk, with the tokens it used; why a
        result there is not theirs goes into `refused` (a line starting with its path)."""
        ...

    def result_files(self, number: int) -> list[Path]:
        """What a finished unit left behind, for --force to remove."""
        ...

    def after_failure(self, manifest: mf.Manifest, number: int) -> mf.Manifest:
        """What else a recorded failure changes (images: a unit whose scene is gone goes)."""
        ...


class ChapterFiles:
    """Chapters: `chapters/NNN.json`, one result file per chapter (`results.py`)."""

    manifest_name = MANIFEST_NAME
    lock_name = LOCK_NAME
    results_dir = CHAPTERS_DIR

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def finished(
        self, numbers: Iterable[int], ours: Provenance, refused: dict[int, str] | None = None
    ) -> dict[int, int]:
        """Chapters whose result file is readable and theirs (it names the chapter and is this
        book's, see `Provenance`)."""
        finished: dict[int, int] = {}
        for number in numbers:
            path = result_path(self.out_dir, number)
            if not path.exists():
                continue
            try:
                result = read_result(path)
            except CorruptResult:
                continue
            why = ours.refusal(result, number)
            if why is None:
                finished[number] = result.usage.total_tokens
            elif refused is not None:
                refused[number] = f"{path} {why}"
        return finished

    def result_files(self, number: int) -> list[Path]:
        return [result_path(self.out_dir, number)]

    def after_failure(self, manifest: mf.Manifest, number: int) -> mf.Manifest:
        return manifest


class ManifestStore:
    """A manifest of units of work: the chapters' by default, another kind's (images) with
    that kind's `files`."""

    def __init__(
        self,
        out_dir: Path,
        *,
        files: UnitFiles | None = None,
        lock_lifetime: float = DEFAULT_LOCK_LIFETIME,
        lock_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.files: UnitFiles = files if files is not None else ChapterFiles(self.out_dir)
        self.path = self.out_dir / self.files.manifest_name
        self.lock_path = self.out_dir / self.files.lock_name
        self._files = ManifestFiles(self.path)
        # Appended to by every transaction: what an idle worker watches besides `path`.
        self.journal_path = self._files.journal_path
        self.clock = clock
        self._lock = manifest_lock(self.lock_path, lock_lifetime)
        # filelock's lock object is re-entrant and its hold is not per thread: a second thread
        # using this store would walk straight into the critical section. This keeps threads
        # sharing one store out of each other's way (and stays re-entrant for one thread).
        self._threads = threading.RLock()
        # Long enough that an expired lock is always broken before we give up.
        self._lock_timeout = lock_timeout if lock_timeout is not None else lock_lifetime + 60

    def read(self) -> mf.Manifest | None:
        """The current manifest without taking the lock: a whole transaction's version (a
        snapshot, and the journal's complete lines). Reads only what changed since this
        store's last read."""
        # Another thread's read must not slip between a transaction's read and its write:
        # the write goes on from where the read left the journal.
        with self._threads:
            return self._files.read()

    @contextmanager
    def locked(self) -> Iterator[None]:
        # No stop interrupts a critical section: a worker's signal handlers only set a flag.
        if not self._threads.acquire(timeout=self._lock_timeout):
            raise LockTimeout(
                f"{self.lock_path}: could not take the lock in {self._lock_timeout:g}s "
                "(held by another thread of this process)"
            )
        try:
            acquire(self._lock, self._lock_timeout)
            try:
                yield
            finally:
                self._lock.release()
        finally:
            self._threads.release()

    def transact(self, change: Callable[[mf.Manifest], tuple[mf.Manifest, T]]) -> T:
        with self.locked():
            current = self.read()
            if current is None:
                raise ManifestError(f"{self.path}: the manifest is missing")
            updated, outcome = change(current)
            if updated != current:
                self._write(updated, current)
        return outcome

    def _write(self, manifest: mf.Manifest, base: mf.Manifest | None) -> None:
        """Only inside `locked`: `manifest` made from `base`, what `read` gave there."""
        self._files.write(manifest.with_entries((), updated_at=self.clock()), base)

    def compact(self) -> None:
        """Write the whole manifest as a new snapshot with an empty journal (transactions do
        it when the journal outgrows the snapshot)."""
        with self.locked():
            current = self.read()
            if current is None:
                raise ManifestError(f"{self.path}: the manifest is missing")
            self._files.compact(current)

    # --- operations built on transact -------------------------------------------------------

    def join(
        self,
        *,
        book_path: str,
        sha256: str,
        title: str,
        chapters: list[tuple[int, str]],
        force: Iterable[int] = (),
        retry_failed: Iterable[int] | None = None,
        retry_passing: Iterable[int] = (),
        warn: Callable[[str], None] | None = None,
    ) -> mf.Manifest:
        """Create the manifest or reconcile with the one there; never reset finished work.
        A result file that is not this book's is not adopted: `warn` hears of each, once the
        lock is released."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / self.files.results_dir).mkdir(exist_ok=True)
        with self.locked():
            sweep_temp_files(self.out_dir)
            sweep_temp_files(self.out_dir / self.files.results_dir)
            current = self.read()
            now = self.clock()
            if current is None:
                current = mf.new_manifest(book_path, sha256, title, chapters, now)
                base = None
            elif current.book_sha256 != sha256:
                raise ManifestError(
                    f"{self.path}: this folder belongs to a different book "
                    f"({current.book_path}); use another --output-dir or remove the folder"
                )
            else:
                base = current
            # Every chapter the manifest will hold, not only those listed now: a completed
            # chapter outside `chapters` keeps its result file and must stay completed.
            numbers = sorted({n for n, _ in chapters} | {e.number for e in current.chapters})
            # Without this book's manifest, only files stamped with its hash are its results.
            ours = provenance(base) if base is not None else Provenance(sha256)
            refused: dict[int, str] = {}
            updated = mf.reconcile(current, chapters, self.files.finished(numbers, ours, refused))
            forced = set(force)
            if forced:
                updated = mf.force_pending(updated, forced)
                self._drop_results(forced, updated)
            if retry_failed is not None:
                updated = mf.retry_failed(updated, retry_failed)
            selected = set(retry_passing)
            updated, reopened = mf.retry_passing(updated, selected)
            failed = mf.Status.FAILED
            left = [e for e in updated.chapters if e.status is failed and e.number in selected]
            if updated != base:
                self._write(updated, base)
            self._sweep_staged(updated)
        if warn is not None:
            for number, why in refused.items():
                warn(f"{why}; chapter {number} will be analysed again")
            if reopened:
                warn(
                    f"{_numbers(reopened)} failed for a passing reason (network, timeout, "
                    "server error) in an earlier run: trying again"
                )
            if left:
                warn(
                    f"{_numbers([e.number for e in left])} failed in an earlier run "
                    f"({left[0].error or 'no reason recorded'}); --retry-failed tries again"
                )
        return updated

    def _sweep_staged(self, manifest: mf.Manifest) -> None:
        """Remove results staged by workers that died before publishing them: a staged file
        (`.<unit>.<token>.<ext>`) whose token no live claim holds can never be published."""
        held = {e.token for e in manifest.chapters if e.status is mf.Status.IN_PROGRESS}
        for staged in (self.out_dir / self.files.results_dir).glob(".*.*"):
            parts = staged.name.split(".")
            if len(parts) == 4 and parts[2].isdigit() and int(parts[2]) not in held:
                with suppress(FileNotFoundError):
                    staged.unlink()

    def _drop_results(self, numbers: set[int], manifest: mf.Manifest) -> None:
        """Remove what the forced units (now pending) left behind; a number not listed (an
        image unit whose scene is gone) keeps its files."""
        pending = {e.number for e in manifest.chapters if e.status is mf.Status.PENDING}
        for number in numbers & pending:
            for path in self.files.result_files(number):
                with suppress(FileNotFoundError):
                    os.unlink(path)

    def publish(
        self,
        number: int,
        token: int,
        staged: Path,
        tokens: int,
    ) -> bool:
        """Make a staged result the chapter's result file and mark it completed, if the claim
        is still ours; otherwise discard the staged file. True when published."""

        def change(current: mf.Manifest) -> tuple[mf.Manifest, bool]:
            updated, ok = mf.complete(current, number, token, self.clock(), tokens)
            if ok:
                _put_in_place(staged, result_path(self.out_dir, number))
            return updated, ok

        try:
            return self.transact(change)
        finally:
            if staged.exists():
                staged.unlink()

    def claim(
        self,
        owner: str,
        *,
        lease: float,
        max_attempts: int,
        wanted: Iterable[int] | None = None,
    ) -> mf.Claim | None:
        def change(current: mf.Manifest) -> tuple[mf.Manifest, mf.Claim | None]:
            now = self.clock()
            current, got = mf.claim(
                current, owner, now, lease=lease, max_attempts=max_attempts, wanted=wanted
            )
            return self._past_finished(current, got, owner, now, lease, max_attempts, wanted)

        return self.transact(change)

    def _past_finished(
        self,
        current: mf.Manifest,
        got: mf.Claim | None,
        owner: str,
        now: float,
        lease: float,
        max_attempts: int,
        wanted: Iterable[int] | None,
    ) -> tuple[mf.Manifest, mf.Claim | None]:
        """A claim taken over whose result is on disk (its last owner died after publishing
        the result but before recording it) completes that unit instead, and the next one is
        claimed; until a claim is of a unit with work left, or there is none."""
        while got is not None and got.reason not in ("pending", "retry"):
            done = self.files.finished([got.number], provenance(current))
            if got.number not in done:  # no result, or one that cannot be read back
                break
            current, _ = mf.complete(current, got.number, got.token, now, done[got.number])
            current, got = mf.claim(
                current, owner, now, lease=lease, max_attempts=max_attempts, wanted=wanted
            )
        return current, got

    def heartbeat(self, number: int, token: int) -> bool:
        return self.transact(lambda m: mf.heartbeat(m, number, token, self.clock()))

    def fail(
        self,
        number: int,
        token: int,
        error: str,
        *,
        retryable: bool = False,
        retry_at: float | None = None,
        spent: tuple[int, int] = (0, 0),
    ) -> bool:
        def change(current: mf.Manifest) -> tuple[mf.Manifest, bool]:
            updated, ok = mf.fail(
                current,
                number,
                token,
                self.clock(),
                error,
                retryable=retryable,
                retry_at=retry_at,
                spent=spent,
            )
            return (self.files.after_failure(updated, number) if ok else updated), ok

        return self.transact(change)

    def release(self, number: int, token: int) -> bool:
        return self.transact(lambda m: mf.release(m, number, token))


def provenance(manifest: mf.Manifest) -> Provenance:
    """Which result files are the manifest's book's: stamped with its hash, or older ones
    without a hash for the chapters it records as completed."""
    done = frozenset(e.number for e in manifest.chapters if e.status is mf.Status.COMPLETED)
    return Provenance(manifest.book_sha256, done)


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:12])
    more = f" and {len(numbers) - 12} more" if len(numbers) > 12 else ""
    return f"chapter{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _put_in_place(staged: Path, final: Path) -> None:
    """Publish a staged file: rename it over the final one, and make the rename durable."""
    os.replace(staged, final)
    fsync_dir(final.parent)
