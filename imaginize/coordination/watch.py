"""Watching the manifest: its changes become progress events, whoever made them (this run's
workers or another terminal's), so every terminal shows the progress of the whole book."""

from __future__ import annotations

import time
from collections.abc import Iterable

from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ManifestError
from imaginize.events import (
    BookProgress,
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    ChapterStarted,
    EventSink,
    ImageFinished,
    Notice,
)
from imaginize.guides.results import CorruptResult, read_result, result_path
from imaginize.settings import DEFAULT_MAX_ATTEMPTS


class ManifestWatcher:
    """Call `poll()` often; each call reads the manifest once and reports what changed."""

    def __init__(
        self,
        store: ManifestStore,
        sink: EventSink,
        wanted: Iterable[int] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        *,
        label: bool = False,
    ) -> None:
        """`label`: name the book in every event (several books in one run)."""
        self._store = store
        self._sink = sink
        self._wanted = None if wanted is None else set(wanted)
        self._max_attempts = max_attempts
        self._last: dict[int, mf.Entry] | None = None
        self._seen: mf.Manifest | None = None
        self._label = label
        self._book = ""
        self._started = time.time()
        self._done_at_start: int | None = None

    def poll(self) -> None:
        try:
            current = self._store.read()
        except ManifestError:
            return
        if current is None or current is self._seen:
            return  # the store read nothing new: the very version of the last poll
        self._seen = current
        self._book = current.title if self._label else ""
        entries = {
            e.number: e
            for e in current.chapters
            if self._wanted is None or e.number in self._wanted
        }
        first = self._last is None
        last = self._last or {}
        changed = False
        for number, entry in entries.items():
            if entry != last.get(number):
                changed = True
                self._changed(entry, last.get(number), first)
        self._last = entries
        if changed:
            self._sink(self._progress(entries))

    def _progress(self, entries: dict[int, mf.Entry]) -> BookProgress:
        done = sum(1 for e in entries.values() if e.status is mf.Status.COMPLETED)
        if self._done_at_start is None:
            self._done_at_start = done
        failed = sum(1 for e in entries.values() if mf.failed_for_good(e, self._max_attempts))
        working = tuple(
            (e.number, e.title, e.owner or "", e.claimed_at or 0.0)
            for e in entries.values()
            if e.status is mf.Status.IN_PROGRESS
        )
        return BookProgress(
            done=done,
            failed=failed,
            total=len(entries),
            working=working,
            tokens=sum(e.tokens + e.spent_prompt + e.spent_completion for e in entries.values()),
            done_this_run=done - self._done_at_start,
            started=self._started,
            at=time.time(),
            book=self._book,
        )

    def _changed(self, entry: mf.Entry, old: mf.Entry | None, first: bool) -> None:
        if entry.status is mf.Status.IN_PROGRESS:
            if old is None or old.token != entry.token:
                self._sink(
                    ChapterStarted(entry.number, entry.title, entry.owner or "", book=self._book)
                )
        elif entry.status is mf.Status.COMPLETED:
            if first:
                self._sink(ChapterSkipped(entry.number, "already done", book=self._book))
            elif old is None or old.status is not mf.Status.COMPLETED:
                self._finished(entry, old)
        elif entry.status is mf.Status.FAILED and (
            old is None or old.token != entry.token or old.status is not mf.Status.FAILED
        ):
            if mf.retry_pending(entry, self._max_attempts):
                wait = max(0.0, (entry.retry_at or 0) - time.time())
                self._sink(
                    ChapterRetry(
                        entry.number, entry.attempts, entry.error or "", wait, book=self._book
                    )
                )
            elif not first:
                self._sink(ChapterFailed(entry.number, entry.error or "failed", book=self._book))

    def _finished(self, entry: mf.Entry, old: mf.Entry | None) -> None:
        try:
            result = read_result(result_path(self._store.out_dir, entry.number))
        except CorruptResult as exc:
            self._sink(Notice(str(exc)))
            return
        started = entry.claimed_at or entry.completed_at or 0.0
        seconds = max(0.0, (entry.completed_at or started) - started)
        owner = old.owner if old is not None and old.owner else ""
        self._sink(ChapterFinished(result, seconds, owner, book=self._book))


class ImageWatcher:
    """The image manifest's changes (--images) as events: a finished image, a failed one."""

    def __init__(self, store: ManifestStore, sink: EventSink, max_attempts: int) -> None:
        self._store = store
        self._sink = sink
        self._max_attempts = max_attempts
        self._last: dict[int, mf.Entry] | None = None

    def poll(self) -> None:
        try:
            current = self._store.read()
        except ManifestError:
            return
        if current is None:
            return
        first = self._last is None
        last = self._last or {}
        for entry in current.chapters:
            old = last.get(entry.number)
            if first or entry == old:
                continue
            if entry.status is mf.Status.COMPLETED and (old is None or old.status != entry.status):
                self._finished(entry)
            elif mf.failed_for_good(entry, self._max_attempts):
                self._sink(Notice(f"image of {entry.title} failed: {entry.error or 'failed'}"))
        self._last = {e.number: e for e in current.chapters}

    def _finished(self, entry: mf.Entry) -> None:
        from imaginize.guides.images import existing_image, unit_parts

        found = existing_image(self._store.out_dir, entry.number)
        if found is None:
            return
        chapter, scene = unit_parts(entry.number)
        seconds = max(0.0, (entry.completed_at or 0.0) - (entry.claimed_at or 0.0))
        relative = f"{found.parent.name}/{found.name}"
        self._sink(ImageFinished(chapter, scene, relative, seconds))
