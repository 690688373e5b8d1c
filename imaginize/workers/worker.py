"""The worker loop: claim a chapter, analyse it, publish its result, repeat until none is left.

A worker is normally an OS process forked from the launcher's forkserver (`process_main`),
which receives its books as (spec, Book) pairs pickled, so it neither imports nor parses
anything again. `python -m imaginize.workers.worker ID` with the spec as JSON on stdin is the
stand-alone form (it reads the book itself); `run_worker` runs one in the calling process
(in-process runs, tests). It stays until every chapter it was asked for is settled, polling
while other processes still hold claims, so that if one of them dies this worker takes its
chapter over (at once when the dead owner is on this host, else after the lease).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path

from imaginize.analysis.base import Analyzer
from imaginize.analysis.pipeline import (
    analyze_chapter,
)
from imaginize.analysis.providers import ProviderKind, make_analyzer
from imaginize.cancel import Token
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import write_json_atomic
from imaginize.coordination.claims import Abandoned, Heartbeat, StopFlag, record_failure, within
from imaginize.coordination.store import ManifestStore
from imaginize.errors import (
    AuthenticationError,
    ExitCode,
    ImaginizeError,
    ManifestError,
    ServerPaused,
    ServerUnreachable,
)
from imaginize.events import (
    ChapterFinished,
    ChapterStarted,
    Event,
    EventSink,
    Notice,
    ignore,
)
from imaginize.guides.images import unit_parts, wanted_units
from imaginize.guides.results import CHAPTERS_DIR
from imaginize.model import Book
from imaginize.pacing import open_pacer
from imaginize.pacing.pace import (
    SharedPace,
    pace_digest,
    server_name,
)
from imaginize.reading.epub import read_book
from imaginize.workers.image_worker import ImageJob, prepare_images, work_on_image
from imaginize.workers.spec import WorkerSpec


def run_worker(
    spec: WorkerSpec,
    worker_id: str,
    *,
    sink: EventSink = ignore,
    stop: StopFlag | None = None,
    book: Book | None = None,
    analyzer: Analyzer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Work on one book until its wanted chapters are settled or `stop` is requested;
    returns how many chapters this worker published."""
    return run_jobs([(spec, book)], worker_id, sink=sink, stop=stop, analyzer=analyzer, sleep=sleep)


@dataclass
class _Job:
    """One book as a worker sees it."""

    spec: WorkerSpec
    store: ManifestStore
    book: Book
    analyzer: Analyzer
    images: ImageJob | None = None
    stop: StopFlag = field(default_factory=StopFlag)
    pacer: SharedPace | None = None
    # Whether the analyzer has built what it needs before its first chapter (`_ready`).
    warmed: bool = False


def _prepare(
    spec: WorkerSpec,
    book: Book | None,
    analyzer: Analyzer | None,
    sink: EventSink = ignore,
) -> _Job:
    book = book or read_book(spec.book_path)
    pacer = None
    if spec.settings.limits is not None and spec.settings.provider.kind is ProviderKind.OPENAI:
        pacer = open_pacer(
            Path(spec.pace_dir or spec.out_dir),
            spec.settings.limits,
            redis_url=spec.settings.redis_url,
            digest=pace_digest(spec.settings.provider.base_url, spec.settings.provider.api_key),
            max_wait=spec.settings.max_wait,
            server=server_name(spec.settings.provider.base_url),
            notice=lambda line: sink(Notice(line)),
        )
    if analyzer is None:
        analyzer = make_analyzer(spec.settings.provider, book, pacer)
    store = ManifestStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
    if not spec.book_sha256:  # a spec made by hand: results carry the folder's book all the same
        with suppress(ManifestError):  # no readable manifest: the first claim says so
            known = store.read()
            spec = replace(spec, book_sha256=known.book_sha256 if known else "")
    images = None
    if spec.settings.images is not None and spec.settings.provider.kind is ProviderKind.OPENAI:
        images = prepare_images(spec, spec.settings.images, pacer)
    return _Job(spec, store, book, analyzer, images, pacer=pacer)


def _ready(job: _Job) -> float:
    """Called before a claim: 0 when the worker may claim now, else seconds to wait. Builds
    what the analyzer needs for the whole book first (the offline analyzer's index), so that
    no chapter's time limit pays for it; waits out a pause the server asked for unclaimed
    (`ServerPaused` when it is longer than --max-wait), so no claim sleeps through it."""
    if not job.warmed:
        warm_up = getattr(job.analyzer, "warm_up", None)
        if warm_up is not None:
            try:  # in a thread, so that a stop need not wait for it: nothing is claimed yet
                within(None, warm_up, "warm-up", stop=job.stop)
            except Abandoned:
                return 0.0  # the loop sees the stop before it claims
        job.warmed = True
    return job.pacer.pause_left() if job.pacer is not None else 0.0


def run_jobs(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    *,
    sink: EventSink = ignore,
    stop: StopFlag | None = None,
    analyzer: Analyzer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Work on several books, one chapter at a time, in book order: a worker takes the first
    claimable chapter of the first book that has one, and leaves when every book is settled."""
    stop = stop or StopFlag()
    prepared = [_prepare(spec, book, analyzer, sink) for spec, book in jobs]
    for job in prepared:
        job.stop = stop
    owner = mf.owner_id(worker_id)
    published = 0
    while not stop.requested:
        waits: list[float] = []
        worked = False
        for job in prepared:
            outcome = _step(job, owner, worker_id, sink)
            if isinstance(outcome, _Worked):
                published += outcome.published
                worked = True
                break
            if outcome is not None:
                waits.append(outcome)
        if worked:
            continue
        if not waits:
            break  # every book is settled
        _nap(min(waits), _watched(prepared), sleep, stop)
    return published


# How often an idle worker checks whether a manifest was rewritten: a stat, no read.
CHANGE_CHECK = 0.02


def _watched(prepared: list[_Job]) -> list[Path]:
    stores = [job.store for job in prepared]
    stores += [job.images.store for job in prepared if job.images is not None]
    # A transaction appends to the journal; a compaction replaces the snapshot.
    return [path for store in stores for path in (store.path, store.journal_path)]


def _nap(
    seconds: float,
    manifests: list[Path],
    sleep: Callable[[float], None],
    stop: StopFlag | None = None,
) -> None:
    """Sleep `seconds`, waking early once any of `manifests` is rewritten (a publish, a
    release, a reset): the last chapter's publish ends every idle worker's wait at once, and a
    chapter given back is taken over at once, not at the next poll. A stop ends it too."""
    before = [_stamp(path) for path in manifests]
    # Counted in naps, not read off a clock, so that a test's instant `sleep` still ends.
    naps = max(1, math.ceil(seconds / CHANGE_CHECK))
    for _ in range(naps):
        sleep(seconds / naps)
        if (stop is not None and stop.requested) or [_stamp(path) for path in manifests] != before:
            return


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a manifest's file is written: a rename (a new inode), an append (a
    new size)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class _Worked:
    """A step that claimed units, and how many of them it published (not the ones that
    failed, were lost, or were given back)."""

    published: int


def _step(
    job: _Job,
    owner: str,
    worker_id: str,
    sink: EventSink,
) -> _Worked | float | None:
    """One look at one book: None when it is settled, a wait in seconds when nothing is
    claimable yet, else what was worked on. Chapters come first; a book's images once its
    chapters are done."""
    spec = job.spec
    got = _claim_next(job.store, spec, owner, spec.chapters, job.stop, lambda: _ready(job))
    if isinstance(got, mf.Claim):
        if got.reason not in ("pending", "retry"):
            sink(Notice(f"chapter {got.number}: taken over ({got.reason})"))
        return _Worked(int(_work_on(job, got, owner, worker_id, sink)))
    if got is False:
        return _Worked(0)
    if job.images is None:
        return got
    chapters_wait = got
    if chapters_wait is None and not job.images.synced:
        # Units of chapters finished before --images was asked for, or by a worker that died
        # between publishing a chapter and listing its scenes.
        selected = spec.chapters or [c.number for c in job.book.chapters]
        job.images.store.sync_units(selected)
        job.images.synced = True
    image = _claim_next(
        job.images.store, spec, owner, _drawable(job), job.stop, lambda: _ready(job)
    )
    if isinstance(image, mf.Claim):
        done = work_on_image(spec, job.images, image, worker_id, sink, job.stop)
        return _Worked(int(done))
    if image is False:
        return _Worked(0)
    if chapters_wait is None:
        return image  # settled only when the images are too
    return chapters_wait if image is None else min(chapters_wait, image)


def _drawable(job: _Job) -> tuple[int, ...]:
    """Image units of the selected chapters (--chapters) that are done: a unit of a chapter
    being redone (--force) waits."""
    assert job.images is not None
    chapters, units = job.store.read(), job.images.store.read()
    if chapters is None or units is None:
        return ()
    done = {e.number for e in chapters.chapters if e.status is mf.Status.COMPLETED}
    wanted = wanted_units(units, job.spec.chapters)
    listed = [e.number for e in units.chapters] if wanted is None else wanted
    return tuple(n for n in listed if unit_parts(n)[0] in done)


def _claim_next(
    store: ManifestStore,
    spec: WorkerSpec,
    owner: str,
    wanted: tuple[int, ...] | None,
    stop: StopFlag,
    ready: Callable[[], float] = lambda: 0.0,
) -> mf.Claim | float | bool | None:
    """A claim; or None when these units are settled, a wait when none is claimable yet (or
    `ready()` asks for one), False when the worker is stopping (nothing claimed)."""
    # Look before locking: an idle worker reads the manifest without the lock and takes it
    # only when there is something to claim.
    current = store.read()
    if current is None or mf.settled(current, spec.settings.claims.max_attempts, wanted):
        return None
    if not _anything_claimable(current, spec, store.clock(), wanted):
        return _idle_wait(current, spec, store.clock(), wanted)
    wait = ready()
    if wait > 0:
        return wait
    if stop.requested:
        return False
    claim = store.claim(
        owner,
        lease=spec.settings.claims.lease,
        max_attempts=spec.settings.claims.max_attempts,
        wanted=wanted,
    )
    return 0.0 if claim is None else claim


def _work_on(
    job: _Job,
    claim: mf.Claim,
    owner: str,
    worker_id: str,
    sink: EventSink,
) -> bool:
    """Analyse the claimed chapter and publish its result; whether it was published."""
    spec, store, analyzer = job.spec, job.store, job.analyzer
    number, token = claim.number, claim.token
    chapter = next(c for c in job.book.chapters if c.number == number)
    sink(ChapterStarted(number, chapter.title, worker_id))
    started = time.monotonic()
    spent_before = analyzer.spent
    beats = ManifestStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
    try:
        # A Token: giving the chapter up (timeout, stop, claim lost) also shuts its request's
        # connection and gives its pacer slot back at once (see cancel).
        with Heartbeat(
            beats, number, token, spec.settings.claims.heartbeat, on_lost=Token()
        ) as beat:
            result = within(
                spec.settings.chapter_timeout,
                lambda: analyze_chapter(
                    chapter,
                    analyzer,
                    pages_per_image=spec.settings.pages_per_image,
                    max_chunk_tokens=spec.settings.max_chunk_tokens,
                ),
                f"chapter-{number}",
                cancel=beat.lost,  # a claim taken over stops spending on our side
                stop=job.stop,
            )
    except Abandoned:  # told to stop at once: given back, the attempt not counted
        store.release(number, token)
        return False
    except (AuthenticationError, ServerPaused, KeyboardInterrupt):
        # Not the chapter's fault (nor a library caller's Ctrl-C): given back, not counted.
        store.release(number, token)
        raise
    except ServerUnreachable as away:
        # Nor is a server that went away: the pace holds everyone until it answers again.
        store.release(number, token)
        sink(Notice(f"{away}; every worker waits for it, no attempt spent"))
        return False
    except Exception as exc:  # the chapter failed; a bug met on it must not end the worker
        spent = analyzer.spent - spent_before  # repairs, cut-offs: paid for, all the same
        record_failure(store, claim, spec.settings.claims.max_attempts, exc, sink, spent)
        return False
    finally:
        # What the provider learned on the way (its server's context, a refused format).
        for message in analyzer.take_notices():
            sink(Notice(message))
    result = replace(result, book_sha256=spec.book_sha256)
    staged = Path(spec.out_dir) / CHAPTERS_DIR / f".{number:03d}.{token}.json"
    write_json_atomic(staged, result.to_json(), sync_dir=False)  # publish syncs the folder
    if not store.publish(number, token, staged, result.usage.total_tokens):
        sink(Notice(f"chapter {number}: claim {token} was taken over; result discarded"))
        return False
    if spec.journal:
        with open(spec.journal, "a", encoding="utf-8") as journal:
            journal.write(f"{number} {token} {owner}\n")
    if job.images is not None:
        # Exactly the scenes of this result: a chapter redone with fewer scenes drops the rest.
        job.images.store.sync_units([number])
    sink(ChapterFinished(result, time.monotonic() - started, worker_id))
    return True


def _anything_claimable(
    current: mf.Manifest, spec: WorkerSpec, now: float, wanted: tuple[int, ...] | None
) -> bool:
    allowed = None if wanted is None else set(wanted)
    return any(
        mf.claimable_reason(
            e, now, spec.settings.claims.lease, spec.settings.claims.max_attempts, mf.owner_is_dead
        )
        is not None
        for e in _open_entries(current)
        if allowed is None or e.number in allowed
    )


def _open_entries(current: mf.Manifest) -> Iterator[mf.Entry]:
    """The entries a claim may ever take (no completed one, none failed for good): an idle
    worker's look at a long, mostly finished book passes over the rest without a look."""
    return (current.chapters[i] for i in current.open_positions())


def _idle_wait(
    current: mf.Manifest, spec: WorkerSpec, now: float, wanted: tuple[int, ...] | None
) -> float:
    """Sleep until the next retry is due, but never longer than the poll interval. Only a
    retry this worker may still claim counts: one out of attempts (failed for good) or
    outside `wanted` would make it poll every few milliseconds."""
    allowed = None if wanted is None else set(wanted)
    due = [
        e.retry_at - now
        for e in _open_entries(current)
        if mf.retry_pending(e, spec.settings.claims.max_attempts)
        and e.retry_at is not None
        and (allowed is None or e.number in allowed)
    ]
    return max(0.01, min([spec.settings.claims.poll, *due]))


# --- the worker process -------------------------------------------------------------------


def _install_signals(stop: StopFlag) -> None:
    # The launcher owns Ctrl-C: it asks workers to stop with SIGTERM, and kills on a second one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.stop_now())
    # Fewer workers wanted (--concurrent auto): finish the chapter in hand, then leave.
    signal.signal(signal.SIGUSR1, lambda signum, frame: stop.finish_and_leave())


def serve(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    *,
    report: Callable[[str | Notice], None] | None = None,
    lifeline: Connection | None = None,
) -> int:
    """A worker process's whole life: signals, the loop, and an exit code. Its one-line error,
    if any, and its notices (what only it knows: a server's context size, a claim taken
    over) go to `report` (the launcher's pipe, as str and `Notice`) or to stderr; progress
    reaches the launcher through the manifest. `lifeline`: a pipe whose other end only the
    launcher holds; when it closes, the launcher is gone."""
    stop = StopFlag()
    say = report or (lambda line: print(line, file=sys.stderr, flush=True))

    def tell(event: Event) -> None:
        if isinstance(event, Notice):
            say(event if report else f"imaginize: {event.message}")

    _install_signals(stop)
    if lifeline is not None:
        threading.Thread(
            target=_stop_when_closed, args=(lifeline, stop), name="lifeline", daemon=True
        ).start()
    try:
        run_jobs(jobs, worker_id, sink=tell, stop=stop)
    except ImaginizeError as exc:
        say(f"imaginize: worker {worker_id}: error: {exc}")
        return exc.exit_code
    except Exception as exc:  # a bug: one line for the launcher, which restarts the worker
        say(f"imaginize: worker {worker_id}: internal error: {exc!r}")
        return ExitCode.CHAPTERS_FAILED
    return ExitCode.INTERRUPTED if stop.at_once else ExitCode.OK


def _stop_when_closed(lifeline: Connection, stop: StopFlag) -> None:
    """Stop this worker as a SIGTERM from its launcher would (claims given back) once the
    launcher has died: killed with -9, it can no longer stop the workers it started, which
    would otherwise go on working, and spending, with nobody watching."""
    try:
        while not lifeline.poll(None):
            pass
    except OSError:
        pass
    stop.stop_now()


def process_main(
    jobs: list[tuple[WorkerSpec, Book | None]],
    worker_id: str,
    errors: Connection,
    lifeline: Connection | None = None,
) -> None:
    """Entry of a worker started by the launcher (forked from its preloaded server)."""
    # Its own session: a terminal's Ctrl-C reaches the launcher only, which decides how the
    # workers stop.
    os.setsid()
    code = serve(jobs, worker_id, report=errors.send, lifeline=lifeline)
    errors.close()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """`python -m imaginize.workers.worker ID`, spec as JSON on stdin: a stand-alone worker."""
    args = sys.argv[1:] if argv is None else argv
    return serve([(WorkerSpec.from_json(sys.stdin.read()), None)], args[0] if args else "w1")


if __name__ == "__main__":
    sys.exit(main())
