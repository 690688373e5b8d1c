"""Running the main job on one book: parse, join the manifest, let workers do the chapters,
write the guides.

`run_book` is the library's entry point and the CLI's. The chapters are done by worker
processes coordinated through the manifest (`--concurrent N`), or, with `in_process=True`,
by one worker in this process (library callers, tests with injected analyzers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imaginize import manifest as mf
from imaginize.analysis.base import Analyzer
from imaginize.autoscale import DEFAULT_MAX_WORKERS, AutoScaler, initial_workers
from imaginize.book import book_fingerprint, chapter_selection, read_book
from imaginize.estimate import DEFAULT_LATENCY, Estimate, estimate
from imaginize.events import EventSink, Notice, RunFinished, RunStarted, ignore
from imaginize.guides import BookInfo, ChapterInfo, write_guides
from imaginize.launcher import Launcher, warm_up
from imaginize.locking import DEFAULT_LOCK_LIFETIME
from imaginize.model import Book
from imaginize.pacing import Limits
from imaginize.pipeline import DEFAULT_MAX_CHUNK_TOKENS, DEFAULT_PAGES_PER_IMAGE
from imaginize.pricing import total_cost
from imaginize.providers import ProviderConfig, resolve_provider
from imaginize.results import load_results
from imaginize.store import ManifestStore
from imaginize.watch import ManifestWatcher
from imaginize.worker import DEFAULT_CHAPTER_TIMEOUT, DEFAULT_HEARTBEAT, WorkerSpec, run_worker


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path | None = None
    provider: ProviderConfig = field(default_factory=resolve_provider)
    chapters: str | None = None
    force: bool = False
    retry_failed: bool = False
    pages_per_image: float = DEFAULT_PAGES_PER_IMAGE
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    max_attempts: int = 3
    concurrent: int = 1
    # --concurrent auto: the launcher sizes the pool itself, up to max_workers.
    auto_scale: bool = False
    max_workers: int = DEFAULT_MAX_WORKERS
    lease: float = mf.DEFAULT_LEASE
    heartbeat: float = DEFAULT_HEARTBEAT
    lock_lifetime: float = DEFAULT_LOCK_LIFETIME
    poll: float = 1.0
    journal: Path | None = None
    in_process: bool = False
    limits: Limits | None = None
    chapter_timeout: float = DEFAULT_CHAPTER_TIMEOUT


def default_out_dir(book_path: Path) -> Path:
    return book_path.parent / f"imaginize_{book_path.stem}"


def book_info(book: Book) -> BookInfo:
    chapters = tuple(ChapterInfo(c.number, c.title, c.word_count) for c in book.chapters)
    return BookInfo(book.title, book.author, chapters)


def run_book(
    book_path: Path | str,
    options: RunOptions | None = None,
    sink: EventSink = ignore,
    *,
    analyzer: Analyzer | None = None,
) -> RunFinished:
    options = options or RunOptions()
    book_path = Path(book_path)
    if not (options.in_process or analyzer is not None):
        warm_up()  # its imports overlap with parsing the book
    book = read_book(book_path)
    out_dir = Path(options.out_dir or default_out_dir(book_path))
    wanted = _selected(book, options.chapters)
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
            len(wanted),
        )
    )
    for warning in book.warnings:
        sink(Notice(f"{book_path}: {warning}"))
    store = ManifestStore(out_dir, lock_lifetime=options.lock_lifetime)
    store.join(
        book_path=str(book_path.resolve()),
        sha256=book_fingerprint(book_path),
        title=book.title,
        chapters=[(c.number, c.title) for c in book.chapters],
        force=wanted if options.force else (),
        retry_failed=wanted if options.retry_failed else None,
    )
    spec = _spec(book_path, out_dir, wanted, options)
    try:
        if options.in_process or analyzer is not None:
            _run_here(spec, store, sink, book, analyzer, options.max_attempts)
        else:
            scaler = None
            if options.auto_scale:
                start = initial_workers(max_workers=options.max_workers)
                scaler = AutoScaler(start, max_workers=options.max_workers)
            Launcher(spec, options.concurrent, sink, book=book, autoscaler=scaler).run()
    finally:
        finished = _finish(out_dir, book, store, wanted)
    sink(finished)
    return finished


def estimate_book(
    book_path: Path | str, options: RunOptions | None = None, latency: float = DEFAULT_LATENCY
) -> tuple[Book, Estimate]:
    """What `run_book` would send, without sending anything or writing any file."""
    options = options or RunOptions()
    book = read_book(book_path)
    wanted = set(_selected(book, options.chapters))
    workers = options.max_workers if options.auto_scale else options.concurrent
    plan = estimate(
        (c for c in book.chapters if c.number in wanted),
        model=options.provider.model,
        book_title=book.title,
        pages_per_image=options.pages_per_image,
        max_chunk_tokens=options.max_chunk_tokens,
        limits=options.limits,
        workers=workers,
        latency=latency,
    )
    return book, plan


def _spec(book_path: Path, out_dir: Path, wanted: list[int], options: RunOptions) -> WorkerSpec:
    return WorkerSpec(
        book_path=str(book_path.resolve()),
        out_dir=str(out_dir.resolve()),
        provider=options.provider,
        chapters=tuple(wanted),
        pages_per_image=options.pages_per_image,
        max_chunk_tokens=options.max_chunk_tokens,
        max_attempts=options.max_attempts,
        lease=options.lease,
        heartbeat=options.heartbeat,
        lock_lifetime=options.lock_lifetime,
        poll=options.poll,
        journal=str(options.journal) if options.journal else None,
        limits=options.limits,
        chapter_timeout=options.chapter_timeout,
    )


def _run_here(
    spec: WorkerSpec,
    store: ManifestStore,
    sink: EventSink,
    book: Book,
    analyzer: Analyzer | None,
    max_attempts: int,
) -> None:
    # Events come from the manifest, as with worker processes, so both paths report alike.
    watcher = ManifestWatcher(store, sink, spec.chapters, max_attempts)
    watcher.poll()

    def notices(event: object) -> None:
        if isinstance(event, Notice):
            sink(event)
        watcher.poll()

    run_worker(spec, "w1", sink=notices, book=book, analyzer=analyzer)
    watcher.poll()


def _finish(out_dir: Path, book: Book, store: ManifestStore, wanted: list[int]) -> RunFinished:
    """Write the guides from whatever results exist (also after an interruption)."""
    results, _ = load_results(out_dir)
    current = store.read()
    selected = set(wanted)
    failures: dict[int, str] = {}
    unfinished = 0
    if current is not None:
        for entry in current.chapters:
            if entry.number not in selected:
                continue
            if entry.status is mf.Status.FAILED:
                failures[entry.number] = entry.error or "failed"
            elif entry.status is not mf.Status.COMPLETED:
                unfinished += 1
    guides = write_guides(out_dir, book_info(book), results, failures)
    done = [n for n in wanted if n in results]
    tokens = sum(r.usage.total_tokens for r in results.values())
    return RunFinished(
        out_dir,
        len(done),
        len(wanted),
        failures,
        tokens,
        tuple(guides),
        unfinished,
        total_cost(results.values()) if tokens else None,
    )


def _selected(book: Book, spec: str | None) -> list[int]:
    if not spec:
        return [c.number for c in book.chapters]
    return sorted(set(chapter_selection(spec, len(book.chapters))))
