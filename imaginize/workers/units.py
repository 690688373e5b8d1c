"""The kinds of unit a worker works on, behind one small interface (`UnitKind`): a book's
chapters (`ChapterUnits`, analysed into chapters/NNN.json) and, with --images, the images of
its scenes (`image_worker.ImageUnits`). The worker loop claims, works and publishes through
the interface without knowing which kind it holds.

Claiming is the same for every kind (`claim_next`): look at the kind's manifest without the
lock, and take the lock only when something this worker wants is claimable and the kind is
ready for it. The answer is one of `Claimed`, `Wait` (nothing claimable yet, or not ready)
and `Settled` (every wanted unit done or failed for good).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from imaginize.analysis.base import Analyzer
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.analysis.providers import ProviderKind, make_analyzer
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import write_json_atomic
from imaginize.coordination.claims import Abandoned, StopFlag, record_failure, within
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ManifestError
from imaginize.events import ChapterFinished, ChapterStarted, EventSink, Notice
from imaginize.guides.results import CHAPTERS_DIR
from imaginize.model import Analysis, Book
from imaginize.pacing import open_pacer
from imaginize.pacing.pace import SharedPace, pace_digest, server_name
from imaginize.reading.epub import read_book
from imaginize.settings import ClaimPolicy
from imaginize.workers.image_worker import ImageUnits
from imaginize.workers.spec import WorkerSpec


class UnitKind(Protocol):
    """One kind of unit of one book, as a worker sees it."""

    name: str  # "chapter", "image": names the thread that works on one
    spec: WorkerSpec
    # The kind's manifest; `beats` is a second store object for the heartbeat thread
    # (filelock's lock objects are re-entrant: one shared across threads would let both in).
    store: ManifestStore
    beats: ManifestStore

    def wanted(self) -> tuple[int, ...] | None:
        """The units this worker may claim now (None: all of them)."""
        ...

    def ready(self, stop: StopFlag) -> float:
        """0 when the worker may claim now, else seconds to wait first."""
        ...

    def start(self, claim: mf.Claim, worker_id: str) -> Callable[[], Any]:
        """Announce the claimed unit; its work, to be run in a thread under its deadline."""
        ...

    def fail(self, claim: mf.Claim, problem: Exception) -> None:
        """Record that the work failed (with what it spent)."""
        ...

    def publish(self, claim: mf.Claim, result: Any, worker_id: str, started: float) -> bool:
        """Publish the work's result (`started`: when the work began, time.monotonic());
        False when the claim was taken over meanwhile."""
        ...

    def notices(self) -> list[str]:
        """What the work learned on the way that the user should read."""
        ...


@dataclass(frozen=True)
class Claimed:
    kind: UnitKind
    claim: mf.Claim


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Settled:
    pass


def next_unit(kinds: Sequence[UnitKind], owner: str, stop: StopFlag) -> Claimed | Wait | Settled:
    """The first claimable unit, in order (a book's chapters, its images, the next book's);
    else the shortest wait; Settled once every kind is."""
    waits: list[float] = []
    for kind in kinds:
        match claim_next(kind, owner, stop):
            case Claimed() as claimed:
                return claimed
            case Wait(seconds):
                waits.append(seconds)
    return Wait(min(waits)) if waits else Settled()


def claim_next(kind: UnitKind, owner: str, stop: StopFlag) -> Claimed | Wait | Settled:
    policy, wanted = kind.spec.settings.claims, kind.wanted()
    # Look before locking: an idle worker reads the manifest without the lock and takes it
    # only when there is something to claim.
    current = kind.store.read()
    if current is None or mf.settled(current, policy.max_attempts, wanted):
        return Settled()
    now = kind.store.clock()
    if not anything_claimable(current, policy, now, wanted):
        return Wait(idle_wait(current, policy, now, wanted))
    wait = kind.ready(stop)
    if wait > 0 or stop.requested:
        return Wait(wait)
    claim = kind.store.claim(
        owner, lease=policy.lease, max_attempts=policy.max_attempts, wanted=wanted
    )
    return Wait(0.0) if claim is None else Claimed(kind, claim)


def anything_claimable(
    current: mf.Manifest, policy: ClaimPolicy, now: float, wanted: tuple[int, ...] | None
) -> bool:
    allowed = None if wanted is None else set(wanted)
    lease, attempts = policy.lease, policy.max_attempts
    return any(
        mf.claimable_reason(e, now, lease, attempts, mf.owner_is_dead) is not None
        for e in _open_entries(current)
        if allowed is None or e.number in allowed
    )


def _open_entries(current: mf.Manifest) -> Iterator[mf.Entry]:
    """The entries a claim may ever take (no completed one, none failed for good): an idle
    worker's look at a long, mostly finished book passes over the rest without a look."""
    return (current.chapters[i] for i in current.open_positions())


def idle_wait(
    current: mf.Manifest, policy: ClaimPolicy, now: float, wanted: tuple[int, ...] | None
) -> float:
    """Sleep until the next retry is due, but never longer than the poll interval. Only a
    retry this worker may still claim counts: one out of attempts (failed for good) or
    outside `wanted` would make it poll every few milliseconds."""
    allowed = None if wanted is None else set(wanted)
    due = [
        e.retry_at - now
        for e in _open_entries(current)
        if mf.retry_pending(e, policy.max_attempts)
        and e.retry_at is not None
        and (allowed is None or e.number in allowed)
    ]
    return max(0.01, min([policy.poll, *due]))


# --- chapters ---------------------------------------------------------------------------------


class ChapterUnits:
    """A book's chapters: analysed by the analyzer, published as chapters/NNN.json."""

    name = "chapter"

    def __init__(
        self,
        spec: WorkerSpec,
        book: Book,
        analyzer: Analyzer,
        sink: EventSink,
        pacer: SharedPace | None,
        images: ImageUnits | None,
    ) -> None:
        self.spec, self.book, self.analyzer, self.sink = spec, book, analyzer, sink
        lifetime = spec.settings.claims.lock_lifetime
        self.store = ManifestStore(Path(spec.out_dir), lock_lifetime=lifetime)
        self.beats = ManifestStore(Path(spec.out_dir), lock_lifetime=lifetime)
        self._pacer = pacer
        self._images = images
        # Whether the analyzer has built what it needs before its first chapter.
        self._warmed = False
        self._spent_before = analyzer.spent

    def wanted(self) -> tuple[int, ...] | None:
        return self.spec.chapters

    def ready(self, stop: StopFlag) -> float:
        """Builds what the analyzer needs for the whole book first (the offline analyzer's
        index), so that no chapter's time limit pays for it; waits out a pause the server
        asked for unclaimed (`ServerPaused` when it is longer than --max-wait), so no claim
        sleeps through it."""
        if not self._warmed:
            warm_up = getattr(self.analyzer, "warm_up", None)
            if warm_up is not None:
                try:  # in a thread, so that a stop need not wait for it: nothing is claimed yet
                    within(None, warm_up, "warm-up", stop=stop)
                except Abandoned:
                    return 0.0  # the stop is seen before any claim
            self._warmed = True
        return self._pacer.pause_left() if self._pacer is not None else 0.0

    def start(self, claim: mf.Claim, worker_id: str) -> Callable[[], Analysis]:
        if claim.reason not in ("pending", "retry"):
            self.sink(Notice(f"chapter {claim.number}: taken over ({claim.reason})"))
        chapter = next(c for c in self.book.chapters if c.number == claim.number)
        self.sink(ChapterStarted(chapter.number, chapter.title, worker_id))
        self._spent_before = self.analyzer.spent
        settings = self.spec.settings
        return lambda: analyze_chapter(
            chapter,
            self.analyzer,
            pages_per_image=settings.pages_per_image,
            max_chunk_tokens=settings.max_chunk_tokens,
        )

    def fail(self, claim: mf.Claim, problem: Exception) -> None:
        spent = self.analyzer.spent - self._spent_before  # repairs, cut-offs: paid for all the same
        attempts = self.spec.settings.claims.max_attempts
        record_failure(self.store, claim, attempts, problem, self.sink, spent)

    def publish(self, claim: mf.Claim, result: Any, worker_id: str, started: float) -> bool:
        """Stage the result outside the lock, then rename it into place in the transaction
        that marks the chapter completed (fenced by the claim's token)."""
        spec, number, token = self.spec, claim.number, claim.token
        result = replace(result, book_sha256=spec.book_sha256)
        staged = Path(spec.out_dir) / CHAPTERS_DIR / f".{number:03d}.{token}.json"
        write_json_atomic(staged, result.to_json(), sync_dir=False)  # publish syncs the folder
        if not self.store.publish(number, token, staged, result.usage.total_tokens):
            self.sink(Notice(f"chapter {number}: claim {token} was taken over; result discarded"))
            return False
        if spec.journal:
            with open(spec.journal, "a", encoding="utf-8") as journal:
                journal.write(f"{number} {token} {mf.owner_id(worker_id)}\n")
        if self._images is not None:
            # Exactly the scenes of this result: a chapter redone with fewer scenes drops the rest.
            self._images.images.sync_units([number])
        self.sink(ChapterFinished(result, time.monotonic() - started, worker_id))
        return True

    def notices(self) -> list[str]:
        # What the provider learned on the way (its server's context, a refused format).
        return self.analyzer.take_notices()


def kinds_for(
    spec: WorkerSpec, book: Book | None, analyzer: Analyzer | None, sink: EventSink
) -> list[UnitKind]:
    """One book's unit kinds, in the order they are worked on: its chapters, then (with
    --images and a server) the images of its scenes."""
    book = book or read_book(spec.book_path)
    settings = spec.settings
    provider, server = settings.provider, settings.provider.kind is ProviderKind.OPENAI
    pacer = None
    if settings.limits is not None and server:
        pacer = open_pacer(
            Path(spec.pace_dir or spec.out_dir),
            settings.limits,
            redis_url=settings.redis_url,
            digest=pace_digest(provider.base_url, provider.api_key),
            max_wait=settings.max_wait,
            server=server_name(provider.base_url),
            notice=lambda line: sink(Notice(line)),
        )
    if analyzer is None:
        analyzer = make_analyzer(provider, book, pacer, out_dir=Path(spec.out_dir))
    if not spec.book_sha256:  # a spec made by hand: results carry the folder's book all the same
        with suppress(ManifestError):  # no readable manifest: the first claim says so
            folder = ManifestStore(Path(spec.out_dir), lock_lifetime=settings.claims.lock_lifetime)
            known = folder.read()
            spec = replace(spec, book_sha256=known.book_sha256 if known else "")
    images = None
    if settings.images is not None and server:
        images = ImageUnits(spec, book, settings.images, pacer, sink)
    chapters = ChapterUnits(spec, book, analyzer, sink, pacer, images)
    return [chapters] if images is None else [chapters, images]


def watched(kinds: Sequence[UnitKind]) -> list[Path]:
    """The files whose change may make a unit claimable: a transaction appends to a
    manifest's journal; a compaction replaces its snapshot."""
    return [path for kind in kinds for path in (kind.store.path, kind.store.journal_path)]
