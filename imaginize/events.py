"""Structured progress events: the library reports through these and never prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imaginize.model import ChapterResult


@dataclass(frozen=True)
class RunStarted:
    book_path: Path
    title: str
    out_dir: Path
    provider: str
    model: str
    provider_reason: str
    chapters: int
    selected: int


@dataclass(frozen=True)
class Notice:
    """Something the user should read (a recovered problem in the book, a skipped file)."""

    message: str


class ServerLimitsText(str):
    """A notice's text that is the limits a server's reply stated (`x-ratelimit-*`) and
    what was left of them (`server: 500 rpm (499 left)`): shown in the [PERF] lines, not on
    a line of its own. A str, so it travels wherever a provider's notices go (worker pipes)."""

    __slots__ = ()


class BatchStateText(str):
    """A notice's text that is a batch's progress (--batch-api: submitted, in progress,
    completed, failed): shown as a line of progress, not as a warning."""

    __slots__ = ()


@dataclass(frozen=True)
class ChapterStarted:
    number: int
    title: str
    worker: str = ""
    # The book's title when one run works on several books, else empty.
    book: str = ""


@dataclass(frozen=True)
class ChapterFinished:
    result: ChapterResult
    seconds: float
    worker: str = ""
    # The book's title when one run works on several books, else empty.
    book: str = ""


@dataclass(frozen=True)
class ImageFinished:
    chapter: int
    scene: int
    file: str
    seconds: float
    worker: str = ""
    book: str = ""


@dataclass(frozen=True)
class ChapterSkipped:
    number: int
    reason: str
    # The book's title when one run works on several books, else empty.
    book: str = ""


@dataclass(frozen=True)
class ChapterRetry:
    number: int
    attempt: int
    reason: str
    wait: float
    # The book's title when one run works on several books, else empty.
    book: str = ""


@dataclass(frozen=True)
class ChapterFailed:
    number: int
    reason: str
    worker: str = ""
    # The book's title when one run works on several books, else empty.
    book: str = ""


@dataclass(frozen=True)
class BookProgress:
    """The whole book's state, sent whenever the manifest changes."""

    done: int
    failed: int
    total: int
    # (chapter, title, owner, claimed at) of every chapter being worked on, by anyone.
    working: tuple[tuple[int, str, str, float], ...]
    tokens: int
    done_this_run: int
    started: float
    at: float

    book: str = ""

    def rate_per_minute(self) -> float | None:
        minutes = (self.at - self.started) / 60
        if self.done_this_run <= 0 or minutes <= 0:
            return None
        return self.done_this_run / minutes

    def eta_seconds(self) -> float | None:
        rate = self.rate_per_minute()
        left = self.total - self.done - self.failed
        if left <= 0:
            return 0.0
        return None if rate is None else left / rate * 60


@dataclass(frozen=True)
class RunFinished:
    out_dir: Path
    completed: int
    total: int
    failures: dict[int, str] = field(default_factory=dict)
    tokens: int = 0
    guides: tuple[Path, ...] = ()
    # Selected chapters left for other processes (or interrupted) when this one stopped.
    unfinished: int = 0
    # US dollars for the tokens used, when every model's price is known.
    cost: float | None = None
    title: str = ""
    # --images: scenes whose image failed for good, by "chapter N, scene M", with the reason.
    image_failures: dict[str, str] = field(default_factory=dict)
    # --images: images of selected, finished chapters neither made nor failed for good when
    # this run stopped (left to other processes, or their workers died); re-run to resume.
    unfinished_images: int = 0


@dataclass(frozen=True)
class LibraryFinished:
    """Several books in one run: each book's summary, and the books that could not be read."""

    books: tuple[RunFinished, ...]
    skipped: dict[Path, str] = field(default_factory=dict)


Event = (
    RunStarted
    | Notice
    | ChapterStarted
    | ChapterFinished
    | ImageFinished
    | ChapterSkipped
    | ChapterRetry
    | ChapterFailed
    | BookProgress
    | RunFinished
    | LibraryFinished
)
EventSink = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default sink for library callers that want no progress."""
