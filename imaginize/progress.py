"""Plain progress: one line per event, for terminals and logs alike."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TextIO

from imaginize import manifest as mf
from imaginize.errors import ManifestError
from imaginize.events import (
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    ChapterStarted,
    Event,
    EventSink,
    Notice,
    RunFinished,
    RunStarted,
)
from imaginize.results import CorruptResult, read_result, result_path
from imaginize.store import ManifestStore


class PlainProgress:
    def __init__(self, stream: TextIO, verbose: bool = True) -> None:
        self._out = stream
        self._verbose = verbose
        self._total = 0
        self._seen = 0

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        quiet_ok = isinstance(event, Notice | ChapterFailed | RunFinished)
        if line is not None and (self._verbose or quiet_ok):
            print(line, file=self._out, flush=True)

    def _line(self, event: Event) -> str | None:
        match event:
            case RunStarted():
                self._total = event.selected
                if event.provider == "offline":
                    using = f"using the built-in offline analyzer ({event.provider_reason})"
                else:
                    using = f"using {event.provider} model {event.model} ({event.provider_reason})"
                counts = f"{event.selected} of {event.chapters} chapters"
                return f"imaginize: {using}\n{event.title}: {counts} -> {event.out_dir}"
            case Notice():
                return f"imaginize: warning: {event.message}"
            case ChapterStarted():
                return None
            case ChapterSkipped():
                self._seen += 1
                return f"[{self._seen}/{self._total}] chapter {event.number}: {event.reason}"
            case ChapterFinished():
                self._seen += 1
                r = event.result
                return (
                    f"[{self._seen}/{self._total}] chapter {r.chapter} {r.title!r}: "
                    f"{_count(len(r.scenes), 'scene')}, {_count(len(r.elements), 'element')} "
                    f"({event.seconds:.1f}s)"
                )
            case ChapterRetry():
                return (
                    f"chapter {event.number}: attempt {event.attempt} failed ({event.reason}); "
                    f"retrying in {event.wait:.1f}s"
                )
            case ChapterFailed():
                self._seen += 1
                return f"[{self._seen}/{self._total}] chapter {event.number} FAILED: {event.reason}"
            case RunFinished():
                return _summary(event)
        return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary(event: RunFinished) -> str:
    done = f"{event.completed}/{event.total} chapters"
    lines = [f"Done: {done}, {event.tokens:,} tokens -> {event.out_dir}"]
    lines += [f"  {path.name}" for path in event.guides]
    for number, reason in sorted(event.failures.items()):
        lines.append(f"  chapter {number} failed: {reason}")
    return "\n".join(lines)


class ManifestWatcher:
    """Turns changes in the manifest into progress events, whoever made them: this run's
    workers or another terminal's."""

    def __init__(
        self,
        store: ManifestStore,
        sink: EventSink,
        wanted: Iterable[int] | None = None,
        max_attempts: int = 3,
    ) -> None:
        self._store = store
        self._sink = sink
        self._wanted = None if wanted is None else set(wanted)
        self._max_attempts = max_attempts
        self._last: dict[int, mf.Entry] | None = None

    def poll(self) -> None:
        try:
            current = self._store.read()
        except ManifestError:
            return
        if current is None:
            return
        entries = {
            e.number: e
            for e in current.chapters
            if self._wanted is None or e.number in self._wanted
        }
        first = self._last is None
        last = self._last or {}
        for number, entry in entries.items():
            if entry != last.get(number):
                self._changed(entry, last.get(number), first)
        self._last = entries

    def _changed(self, entry: mf.Entry, old: mf.Entry | None, first: bool) -> None:
        if entry.status is mf.Status.IN_PROGRESS:
            if old is None or old.token != entry.token:
                self._sink(ChapterStarted(entry.number, entry.title, entry.owner or ""))
        elif entry.status is mf.Status.COMPLETED:
            if first:
                self._sink(ChapterSkipped(entry.number, "already done"))
            elif old is None or old.status is not mf.Status.COMPLETED:
                self._finished(entry, old)
        elif entry.status is mf.Status.FAILED and (
            old is None or old.token != entry.token or old.status is not mf.Status.FAILED
        ):
            if entry.retryable and entry.attempts < self._max_attempts:
                wait = max(0.0, (entry.retry_at or 0) - time.time())
                self._sink(ChapterRetry(entry.number, entry.attempts, entry.error or "", wait))
            elif not first:
                self._sink(ChapterFailed(entry.number, entry.error or "failed"))

    def _finished(self, entry: mf.Entry, old: mf.Entry | None) -> None:
        try:
            result = read_result(result_path(self._store.out_dir, entry.number))
        except CorruptResult as exc:
            self._sink(Notice(str(exc)))
            return
        started = entry.claimed_at or entry.completed_at or 0.0
        seconds = max(0.0, (entry.completed_at or started) - started)
        owner = old.owner if old is not None and old.owner else ""
        self._sink(ChapterFinished(result, seconds, owner))
