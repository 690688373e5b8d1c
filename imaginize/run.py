"""Running the main job on one book: parse, pick chapters, analyse each, write the guides."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imaginize.analysis.base import Analyzer
from imaginize.backoff import backoff_delay
from imaginize.book import chapter_selection, read_book
from imaginize.errors import AuthenticationError, ProviderError
from imaginize.events import (
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    ChapterStarted,
    EventSink,
    Notice,
    RunFinished,
    RunStarted,
    ignore,
)
from imaginize.guides import BookInfo, ChapterInfo, write_guides
from imaginize.model import Book, Chapter, ChapterResult
from imaginize.pipeline import DEFAULT_MAX_CHUNK_TOKENS, DEFAULT_PAGES_PER_IMAGE, analyze_chapter
from imaginize.providers import ProviderConfig, make_analyzer, resolve_provider
from imaginize.results import load_results, result_path, write_result


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path | None = None
    provider: ProviderConfig = field(default_factory=resolve_provider)
    chapters: str | None = None
    force: bool = False
    pages_per_image: float = DEFAULT_PAGES_PER_IMAGE
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    max_attempts: int = 3


def default_out_dir(book_path: Path) -> Path:
    return book_path.parent / f"imaginize_{book_path.stem}"


def book_info(book: Book) -> BookInfo:
    chapters = tuple(ChapterInfo(c.number, c.title, c.word_count) for c in book.chapters)
    return BookInfo(book.title, book.author, chapters)


def run_book(
    book_path: Path | str,
    options: RunOptions | None = None,
    sink: EventSink = ignore,
    sleep: Callable[[float], None] = time.sleep,
) -> RunFinished:
    options = options or RunOptions()
    book_path = Path(book_path)
    book = read_book(book_path)
    out_dir = Path(options.out_dir or default_out_dir(book_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = _selected(book, options.chapters)
    config = options.provider
    sink(
        RunStarted(
            book_path,
            book.title,
            out_dir,
            config.kind.value,
            config.model,
            config.reason,
            len(book.chapters),
            len(selected),
        )
    )
    for warning in book.warnings:
        sink(Notice(f"{book_path}: {warning}"))
    done, problems = load_results(out_dir)
    for problem in problems:
        sink(Notice(f"unreadable result will be redone: {problem}"))
    analyzer = make_analyzer(config, book)
    failures: dict[int, str] = {}
    for chapter in selected:
        if chapter.number in done and not options.force:
            sink(
                ChapterSkipped(
                    chapter.number, f"already done ({result_path(out_dir, chapter.number).name})"
                )
            )
            continue
        result = _attempt(chapter, analyzer, options, sink, sleep)
        if isinstance(result, str):
            failures[chapter.number] = result
            continue
        write_result(out_dir, result)
        done[chapter.number] = result
    guides = write_guides(out_dir, book_info(book), done, failures)
    tokens = sum(r.usage.total_tokens for r in done.values())
    finished = RunFinished(
        out_dir,
        len([c for c in selected if c.number in done]),
        len(selected),
        failures,
        tokens,
        tuple(guides),
    )
    sink(finished)
    return finished


def _selected(book: Book, spec: str | None) -> list[Chapter]:
    if not spec:
        return list(book.chapters)
    wanted = set(chapter_selection(spec, len(book.chapters)))
    return [c for c in book.chapters if c.number in wanted]


def _attempt(
    chapter: Chapter,
    analyzer: Analyzer,
    options: RunOptions,
    sink: EventSink,
    sleep: Callable[[float], None],
) -> ChapterResult | str:
    """The chapter's result, or the reason it failed after `max_attempts` tries."""
    for attempt in range(1, options.max_attempts + 1):
        sink(ChapterStarted(chapter.number, chapter.title))
        started = time.monotonic()
        try:
            result = analyze_chapter(
                chapter,
                analyzer,
                pages_per_image=options.pages_per_image,
                max_chunk_tokens=options.max_chunk_tokens,
            )
        except AuthenticationError:
            raise
        except ProviderError as exc:
            if not exc.retryable or attempt == options.max_attempts:
                sink(ChapterFailed(chapter.number, str(exc)))
                return str(exc)
            wait = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
            sink(ChapterRetry(chapter.number, attempt, str(exc), wait))
            sleep(wait)
            continue
        sink(ChapterFinished(result, time.monotonic() - started))
        return result
    raise AssertionError("unreachable: the last attempt returns")
