"""Running the main job on one book: parse, join the manifest, let workers do the chapters,
write the guides.

`run_book` is the library's entry point and the CLI's. The chapters are done by worker
processes coordinated through the manifest (`--concurrent N`), or, with `in_process=True`,
by one worker in this process (library callers, tests with injected analyzers).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from imaginize.analysis.base import Analyzer
from imaginize.analysis.estimate import DEFAULT_LATENCY, Estimate, estimate, wall_time
from imaginize.analysis.offline import languages
from imaginize.analysis.openai.prompt import chapter_messages
from imaginize.analysis.pricing import cost, total_cost
from imaginize.analysis.providers import ProviderConfig, ProviderKind, is_local, resolve_provider
from imaginize.coordination import manifest as mf
from imaginize.coordination.locking import reporting_waits
from imaginize.coordination.store import ManifestStore, provenance
from imaginize.coordination.watch import ManifestWatcher
from imaginize.errors import BookError, ManifestError, ProviderError
from imaginize.events import EventSink, LibraryFinished, Notice, RunFinished, RunStarted, ignore
from imaginize.guides.images import (
    IMAGES_DIR,
    ImageStore,
    expected_units,
    unit_parts,
    wanted_units,
    write_prompt_files,
)
from imaginize.guides.merge import BookInfo, ChapterInfo, write_guides
from imaginize.guides.results import load_results
from imaginize.model import Book, Chapter, Usage
from imaginize.pacing import open_pacer
from imaginize.pacing.pace import clock_time, pace_digest, pace_dir, server_name
from imaginize.reading.chunking import split_chapter
from imaginize.reading.epub import book_fingerprint, chapter_selection, read_book
from imaginize.settings import (
    DEFAULT_CHAPTER_TIMEOUT,
    DEFAULT_MAX_WORKERS,
    ClaimPolicy,
    RunSettings,
)
from imaginize.workers import startup
from imaginize.workers.autoscale import AutoScaler, initial_workers
from imaginize.workers.launcher import Launcher
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.worker import run_worker


def _offline_settings() -> RunSettings:
    return RunSettings(resolve_provider())


@dataclass(frozen=True)
class RunOptions:
    """A run: the settings every worker is told (`settings.RunSettings`), and what is
    decided once for the whole run (which books and chapters, how many workers)."""

    settings: RunSettings = field(default_factory=_offline_settings)
    out_dir: Path | None = None
    chapters: str | None = None
    force: bool = False
    retry_failed: bool = False
    concurrent: int = 1
    # --concurrent auto: the launcher sizes the pool itself, up to max_workers.
    auto_scale: bool = False
    max_workers: int = DEFAULT_MAX_WORKERS
    journal: Path | None = None
    in_process: bool = False

    @classmethod
    def of(cls, **named: Any) -> RunOptions:
        """Options from flat names, as `analyze_book` takes them: a field of `RunOptions`,
        of `RunSettings` (provider, limits, images, pages_per_image, ...) or of
        `ClaimPolicy` (lease, heartbeat, poll, max_attempts, lock_lifetime). Settings not
        named keep their defaults; an unknown name is a TypeError."""
        parts: dict[type, dict[str, Any]] = {RunOptions: {}, RunSettings: {}, ClaimPolicy: {}}
        owners = {f.name: kind for kind in parts for f in fields(kind)}
        for name, value in named.items():
            if name not in owners or name in ("settings", "claims"):
                raise TypeError(f"unknown run option {name!r}")
            parts[owners[name]][name] = value
        provider = parts[RunSettings].pop("provider", None) or resolve_provider()
        claims = ClaimPolicy(**parts[ClaimPolicy])
        settings = RunSettings(provider, claims=claims, **parts[RunSettings])
        return cls(settings=settings, **parts[RunOptions])


def chapter_timeout_for(provider: ProviderConfig) -> float:
    """A chapter's time limit when none is given: a reply may take the whole `--timeout`
    (minutes on a local server) and a chapter may need a repair, so never less than two."""
    if provider.kind is not ProviderKind.OPENAI:
        return DEFAULT_CHAPTER_TIMEOUT
    return max(DEFAULT_CHAPTER_TIMEOUT, 2 * provider.timeout + 60)


def default_out_dir(book_path: Path) -> Path:
    return book_path.parent / f"imaginize_{book_path.stem}"


def book_info(book: Book) -> BookInfo:
    chapters = tuple(ChapterInfo(c.number, c.title, c.word_count) for c in book.chapters)
    return BookInfo(book.title, book.author, chapters)


@dataclass
class _Prepared:
    """A book parsed, its manifest joined, its worker spec made: ready for workers."""

    path: Path
    book: Book
    out_dir: Path
    wanted: list[int]
    store: ManifestStore
    spec: WorkerSpec


def _prepare(book_path: Path, out_dir: Path, options: RunOptions, sink: EventSink) -> _Prepared:
    book = read_book(book_path)
    wanted = _selected(book, options.chapters)
    config = options.settings.provider
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
    if config.kind is ProviderKind.OFFLINE:
        # Said once here, not by each worker: what a book not in English will lack.
        code = languages.book_language(book.language, [c.text for c in book.chapters])
        if not languages.is_english(code):
            sink(Notice(languages.offline_warning(book.title, code)))
    store = ManifestStore(out_dir, lock_lifetime=options.settings.claims.lock_lifetime)
    sha256 = book_fingerprint(book_path)
    store.join(
        book_path=str(book_path.resolve()),
        sha256=sha256,
        title=book.title,
        chapters=[(c.number, c.title) for c in book.chapters],
        force=wanted if options.force else (),
        retry_failed=wanted if options.retry_failed else None,
        retry_passing=wanted,
        warn=lambda line: sink(Notice(line)),
    )
    spec = _spec(book_path, out_dir, wanted, options, sha256)
    if options.settings.images is not None:
        if config.kind is ProviderKind.OPENAI:
            _join_images(spec, sha256, book, options, wanted)
        else:
            sink(
                Notice(
                    "--images with the offline analyzer writes each scene's image prompt to "
                    f"{out_dir / IMAGES_DIR}/*.txt; it makes no images"
                )
            )
    return _Prepared(book_path, book, out_dir, wanted, store, spec)


def _join_images(
    spec: WorkerSpec, sha256: str, book: Book, options: RunOptions, wanted: list[int]
) -> None:
    """Create or rejoin the image manifest, listing the units of the selected chapters that
    are done; --force and --retry-failed reach those chapters' images too."""
    images = ImageStore(Path(spec.out_dir), lock_lifetime=spec.settings.claims.lock_lifetime)
    ours = wanted_units(images, wanted) or ()
    images.manifest.join(
        book_path=spec.book_path,
        sha256=sha256,
        title=book.title,
        chapters=expected_units(Path(spec.out_dir), wanted),
        force=ours if options.force else (),
        retry_failed=ours if options.retry_failed else None,
    )


def run_book(
    book_path: Path | str,
    options: RunOptions | None = None,
    sink: EventSink = ignore,
    *,
    analyzer: Analyzer | None = None,
) -> RunFinished:
    """Analyse one book and write its guides; raises `BookError` when it cannot be read."""
    options = options or RunOptions()
    book_path = Path(book_path)
    here = options.in_process or analyzer is not None
    if not here:
        startup.begin(options.settings.provider)  # its imports overlap with the reading
    job = _join(book_path, Path(options.out_dir or default_out_dir(book_path)), options, sink)
    try:
        _server_pause([job], options, sink)
        if here:
            _run_here(job.spec, job.store, sink, job.book, analyzer)
        else:
            _launch([job], options, sink)
    finally:
        finished = _finish(job, sink)
    sink(finished)
    return finished


def run_books(
    paths: list[Path | str], options: RunOptions | None = None, sink: EventSink = ignore
) -> LibraryFinished:
    """Analyse many books with one pool of workers (folders stand for the EPUBs in them).

    Each book gets its own output folder and manifest (`library_out_dirs`); the request pace
    is shared per API key. A book that cannot be read, or whose manifest cannot be joined
    (its folder belongs to another book, the manifest is damaged), is reported and skipped;
    the others go on.
    """
    options = options or RunOptions()
    startup.begin(options.settings.provider)
    jobs: list[_Prepared] = []
    skipped: dict[Path, str] = {}
    books = expand_books(paths)
    for path, out_dir in zip(books, library_out_dirs(books, options.out_dir), strict=True):
        try:
            jobs.append(_join(path, out_dir, options, sink))
        except BookError as exc:
            skipped[path] = exc.reason
            sink(Notice(f"skipping {exc}"))
        except ManifestError as exc:
            skipped[path] = str(exc)
            sink(Notice(f"skipping {path}: {exc}"))
    finished: list[RunFinished] = []
    try:
        if jobs:
            _server_pause(jobs, options, sink)
            _launch(jobs, options, sink)
    finally:
        finished = [_finish(job, sink) for job in jobs]
    for done in finished:
        sink(done)
    library = LibraryFinished(tuple(finished), skipped)
    sink(library)
    return library


def _join(book_path: Path, out_dir: Path, options: RunOptions, sink: EventSink) -> _Prepared:
    """`_prepare`, saying in one line what it waits for when the book's lock is held for
    long (an empty lock file, a live pid without a start token: not provably stale, so
    broken only by age), and how to clear it."""
    unlock = ["imaginize", "unlock", str(book_path)]
    if out_dir.resolve() != default_out_dir(book_path).resolve():
        unlock += ["-o", str(out_dir)]
    clear = f"if no imaginize is running on it, `{shlex.join([*unlock, '--yes'])}` removes it"
    with reporting_waits(lambda line: sink(Notice(f"{line}; {clear}"))):
        return _prepare(book_path, out_dir, options, sink)


def _server_pause(jobs: list[_Prepared], options: RunOptions, sink: EventSink) -> None:
    """A pause the server asked for before this run (stored in the shared pace) is still
    on: one line saying it is waited out, or `ServerPaused` (nothing claimed, exit 3) when
    it lasts longer than --max-wait."""
    folders = {job.spec.pace_dir or job.spec.out_dir: job.spec for job in jobs}
    for folder, spec in folders.items():
        settings = spec.settings
        if settings.limits is None or settings.provider.kind is not ProviderKind.OPENAI:
            continue
        server = server_name(settings.provider.base_url)
        # With --redis this is also where a wrong URL stops the run (ConfigError, exit 2).
        pacer = open_pacer(
            Path(folder),
            settings.limits,
            redis_url=settings.redis_url,
            digest=pace_digest(settings.provider.base_url, settings.provider.api_key),
            max_wait=settings.max_wait,
            server=server,
            check=True,
        )
        left = pacer.pause_left(" an earlier request")
        if left > 0:
            now = time.time()
            sink(
                Notice(
                    f"{server} asked an earlier request to wait until "
                    f"{clock_time(now + left, now)}: waiting {left:.0f}s "
                    f"(within --max-wait {settings.max_wait:g}s)"
                )
            )


def library_out_dirs(books: list[Path], out_dir: Path | None) -> list[Path]:
    """Each book's output folder in a library run: `imaginize_<name>` inside `out_dir`, or
    beside the book when None. A folder an earlier book already has (two books called
    book.epub) gets `-2`, `-3`, ... in argument order, so no two books share a manifest."""
    taken: set[str] = set()
    folders: list[Path] = []
    for book in books:
        base = Path(out_dir) / f"imaginize_{book.stem}" if out_dir else default_out_dir(book)
        folder, suffix = base, 1
        # Case-insensitive, as the folder names are on some file systems.
        while str(folder.resolve()).casefold() in taken:
            suffix += 1
            folder = base.with_name(f"{base.name}-{suffix}")
        taken.add(str(folder.resolve()).casefold())
        folders.append(folder)
    return folders


def expand_books(paths: list[Path | str]) -> list[Path]:
    """Files as given; a folder gives its *.epub files in name order."""
    books: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.epub"))
            if not found:
                raise BookError(path, "is a folder with no .epub files in it")
            books.extend(found)
        else:
            books.append(path)
    return list(dict.fromkeys(books))


def _launch(jobs: list[_Prepared], options: RunOptions, sink: EventSink) -> None:
    scaler = None
    if options.auto_scale:
        start = initial_workers(max_workers=options.max_workers)
        provider, url = options.settings.provider, options.settings.provider.base_url
        if provider.kind is ProviderKind.OPENAI and url and is_local(url):
            # One machine's model server: start alone, grow only while it pays.
            start = 1
        scaler = AutoScaler(start, max_workers=options.max_workers)
    pairs = [(job.spec, job.book) for job in jobs]
    Launcher(pairs, options.concurrent, sink, autoscaler=scaler).run()


def estimate_book(
    book_path: Path | str, options: RunOptions | None = None, latency: float | None = None
) -> tuple[Book, Estimate, str]:
    """What `run_book` would send, without writing any file; and where the time a request
    takes comes from. `latency` None: measured with one short request on a server on this
    machine or network (a local model's speed varies a hundredfold), else a hosted API's
    typical figure. Nothing else is sent."""
    options = options or RunOptions()
    book = read_book(book_path)
    wanted = set(_selected(book, options.chapters))
    workers = options.max_workers if options.auto_scale else options.concurrent
    selected = [c for c in book.chapters if c.number in wanted]
    settings = options.settings
    plan = estimate(
        selected,
        model=settings.provider.model,
        book_title=book.title,
        pages_per_image=settings.pages_per_image,
        max_chunk_tokens=settings.max_chunk_tokens,
        limits=settings.limits,
        workers=workers,
        latency=latency or DEFAULT_LATENCY,
    )
    if latency is not None:
        return book, plan, f"{latency:g} s a request (--assume-latency)"
    config = settings.provider
    if config.kind is ProviderKind.OFFLINE:
        return book, plan, "offline: no requests"
    if not config.base_url or not is_local(config.base_url):
        typical = f"{DEFAULT_LATENCY:g} s a request, typical of a hosted API (--assume-latency)"
        return book, plan, typical
    measured, note = _measured(book, selected, options, plan, workers)
    return book, measured, note


def _measured(
    book: Book, selected: list[Chapter], options: RunOptions, plan: Estimate, workers: int
) -> tuple[Estimate, str]:
    from imaginize.analysis.openai.doctor import measure_speed  # the openai client: only for this

    sample = split_chapter(selected[0], 1000)[0] if selected else Chapter(1, "", "")
    try:
        speed = measure_speed(options.settings.provider, chapter_messages(sample, 1, book.title))
    except ProviderError as exc:
        note = f"{DEFAULT_LATENCY:g} s a request; the server could not be timed ({exc})"
        return plan, note
    requests = max(1, plan.requests)
    seconds = speed.seconds_for(plan.input_tokens // requests, plan.output_tokens // requests)
    wall = wall_time(plan.requests, workers, seconds, options.settings.limits)
    note = (
        f"{seconds:.0f} s a request, measured: {speed.first_token:.1f} s to read "
        f"{speed.prompt_tokens:,} prompt tokens, {speed.tokens_per_second:.1f} tokens/s written"
    )
    return replace(plan, wall_seconds=wall, timing_requests=1), note


def _spec(
    book_path: Path, out_dir: Path, wanted: list[int], options: RunOptions, sha256: str
) -> WorkerSpec:
    """The workers' spec. Derived settings are made here, for every caller: the claim policy
    fitted to its lease (`ClaimPolicy.fitted`), the chapter timeout for the provider, and
    the pace's place (none unpaced)."""
    settings = options.settings
    paced = settings.limits is not None
    return WorkerSpec(
        book_path=str(book_path.resolve()),
        out_dir=str(out_dir.resolve()),
        settings=replace(
            settings,
            claims=settings.claims.fitted(),
            chapter_timeout=settings.chapter_timeout or chapter_timeout_for(settings.provider),
            redis_url=settings.redis_url if paced else None,
        ),
        chapters=tuple(wanted),
        book_sha256=sha256,
        pace_dir=_pace_dir(settings.provider) if paced else None,
        journal=str(options.journal) if options.journal else None,
    )


def _pace_dir(config: ProviderConfig) -> str | None:
    """The per-key pace folder, or None (the book's own folder) when it cannot be made."""
    folder = pace_dir(config.base_url, config.api_key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder)


def _run_here(
    spec: WorkerSpec,
    store: ManifestStore,
    sink: EventSink,
    book: Book,
    analyzer: Analyzer | None,
) -> None:
    # Events come from the manifest, as with worker processes, so both paths report alike.
    watcher = ManifestWatcher(store, sink, spec.chapters, spec.settings.claims.max_attempts)
    watcher.poll()

    def notices(event: object) -> None:
        if isinstance(event, Notice):
            sink(event)
        watcher.poll()

    run_worker(spec, "w1", sink=notices, book=book, analyzer=analyzer)
    watcher.poll()


def _finish(job: _Prepared, sink: EventSink = ignore) -> RunFinished:
    """Write the guides from whatever results of this book exist (also after an
    interruption); a result file left out of them is named in a notice."""
    out_dir, book, wanted = job.out_dir, job.book, job.wanted
    current = job.store.read()
    results, problems = load_results(out_dir, provenance(current) if current else None)
    for problem in problems:
        sink(Notice(problem))
    selected = set(wanted)
    failures: dict[int, str] = {}
    unfinished = 0
    spent = Usage()
    if current is not None:
        for entry in current.chapters:
            spent += Usage(entry.spent_prompt, entry.spent_completion)
            if entry.number not in selected:
                continue
            if entry.status is mf.Status.FAILED:
                failures[entry.number] = entry.error or "failed"
            elif entry.status is not mf.Status.COMPLETED:
                unfinished += 1
    image_failures: dict[str, str] = {}
    unfinished_images = 0
    settings = job.spec.settings
    if settings.images is not None and settings.provider.kind is not ProviderKind.OPENAI:
        write_prompt_files(out_dir, settings.images.model)
    elif settings.images is not None:
        image_failures, unfinished_images = _images_left(
            out_dir, settings.claims.max_attempts, wanted, current
        )
    model = settings.provider.model
    guides = write_guides(out_dir, book_info(book), results, failures, spent, model)
    done = [n for n in wanted if n in results]
    tokens = sum(r.usage.total_tokens for r in results.values()) + spent.total_tokens
    dollars = total_cost(results.values())
    if dollars is not None and spent.total_tokens:
        extra = cost(model, spent)
        dollars = None if extra is None else dollars + extra
    return RunFinished(
        out_dir,
        len(done),
        len(wanted),
        failures,
        tokens,
        tuple(guides),
        unfinished,
        dollars if tokens else None,
        book.title,
        image_failures,
        unfinished_images,
    )


def _images_left(
    out_dir: Path, max_attempts: int, wanted: list[int], chapters: mf.Manifest | None
) -> tuple[dict[str, str], int]:
    """The selected chapters' images that failed for good, and how many images of selected
    chapters that are done are still to be made (pending, in progress, or failed with a retry
    left): the units the workers would have drawn had they not stopped."""
    listed = ImageStore(out_dir).read()
    if listed is None:
        return {}, 0
    ours = set(wanted_units(listed, wanted) or ())
    done: set[int] = set()
    if chapters is not None:
        done = {e.number for e in chapters.chapters if e.status is mf.Status.COMPLETED}
    failures: dict[str, str] = {}
    unfinished = 0
    for entry in listed.chapters:
        if entry.number not in ours or entry.status is mf.Status.COMPLETED:
            continue
        if mf.failed_for_good(entry, max_attempts):
            failures[entry.title] = entry.error or "failed"
        elif unit_parts(entry.number)[0] in done:
            unfinished += 1
    return failures, unfinished


def _selected(book: Book, spec: str | None) -> list[int]:
    if not spec:
        return [c.number for c in book.chapters]
    return sorted(set(chapter_selection(spec, len(book.chapters))))
