"""Progress views: plain lines for logs and pipes, and a live display for terminals."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from imaginize.analysis.pricing import format_cost
from imaginize.events import (
    BatchStateText,
    BookProgress,
    ChapterFailed,
    ChapterFinished,
    ChapterRetry,
    ChapterSkipped,
    ChapterStarted,
    Event,
    ImageFinished,
    LibraryFinished,
    Notice,
    RunFinished,
    RunStarted,
    ServerLimitsText,
)
from imaginize.safetext import for_terminal, one_line

if TYPE_CHECKING:
    from imaginize.analysis.estimate import Estimate
    from imaginize.run import RunOptions

PERF_EVERY = 10


def perf_line(progress: BookProgress, server: str = "") -> str:
    """`[PERF] 25/100 chapters | 0.8/min | 3 working | 12,345 tokens | ETA 1m34s`, and what
    the server last stated of its limits (`server`: `server: 500 rpm (499 left)`)."""
    rate = progress.rate_per_minute()
    eta = progress.eta_seconds()
    parts = [
        f"{progress.done}/{progress.total} chapters",
        f"{rate:.1f}/min" if rate is not None else "-/min",
        f"{len(progress.working)} working",
        f"{progress.tokens:,} tokens",
        f"ETA {format_duration(eta)}" if eta is not None else "ETA -",
    ]
    if progress.failed:
        parts.insert(1, f"{progress.failed} failed")
    if server:
        parts.append(server)
    return "[PERF] " + " | ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class PlainProgress:
    """One line per event; a `[PERF]` line every ten finished chapters and at the end."""

    def __init__(self, stream: TextIO, verbose: bool = True) -> None:
        self._out = stream
        self._verbose = verbose
        # Per book, keyed by title ("" when the run has one book and events do not name it).
        self._total: dict[str, int] = {}
        # Chapters reported per book: one redone meanwhile (--force in another terminal) or
        # failed and then retried counts once, so the count never passes the total.
        self._seen: dict[str, set[int]] = {}
        self._perf_at: dict[str, int] = {}
        self._last_progress: dict[str, BookProgress] = {}
        # What the server last stated of its limits (x-ratelimit-* headers).
        self.server_limits = ""

    def __call__(self, event: Event) -> None:
        line = self.format(event)
        quiet_ok = isinstance(
            event, Notice | ChapterFailed | RunFinished | BookProgress | LibraryFinished
        )
        if line is not None and getattr(event, "book", ""):
            line = f"[{one_line(event.book)}] {line}"  # type: ignore[union-attr]
        if line is not None and (self._verbose or quiet_ok):
            print(for_terminal(line), file=self._out, flush=True)

    def format(self, event: Event) -> str | None:
        """The line for `event`, or None; keeps the counts the lines show. Titles, paths and
        reasons come from the book and the server: each is shown on one line (`one_line`)."""
        match event:
            case RunStarted():
                self._total[event.title] = self._total[""] = event.selected
                if event.provider == "offline":
                    using = f"using the built-in offline analyzer ({event.provider_reason})"
                else:
                    model = one_line(event.model)
                    using = f"using {event.provider} model {model} ({event.provider_reason})"
                counts = f"{event.selected} of {event.chapters} chapters"
                where = one_line(str(event.out_dir))
                return f"imaginize: {using}\n{one_line(event.title)}: {counts} -> {where}"
            case Notice(message=ServerLimitsText()):
                self.server_limits = one_line(event.message)
                return None
            case Notice(message=BatchStateText()):
                return f"imaginize: {one_line(event.message)}"
            case Notice():
                return f"imaginize: warning: {one_line(event.message)}"
            case ChapterStarted():
                return None
            case ChapterSkipped():
                count = self._count(event.book, event.number)
                return f"{count} chapter {event.number}: {one_line(event.reason)}"
            case ChapterFinished():
                r = event.result
                return (
                    f"{self._count(event.book, r.chapter)} chapter {r.chapter} "
                    f"{one_line(repr(r.title))}: "
                    f"{_count(len(r.scenes), 'scene')}, {_count(len(r.elements), 'element')} "
                    f"({event.seconds:.1f}s)"
                )
            case ImageFinished():
                where = one_line(event.file)
                return f"image of chapter {event.chapter}, scene {event.scene} -> {where}"
            case ChapterRetry():
                return (
                    f"chapter {event.number}: attempt {event.attempt} failed "
                    f"({one_line(event.reason)}); "
                    f"retrying in {event.wait:.1f}s"
                )
            case ChapterFailed():
                count = self._count(event.book, event.number)
                return f"{count} chapter {event.number} FAILED: {one_line(event.reason)}"
            case BookProgress():
                self._last_progress[event.book] = event
                if event.done >= self._perf_at.get(event.book, 0) + PERF_EVERY:
                    self._perf_at[event.book] = event.done - event.done % PERF_EVERY
                    return perf_line(event, self.server_limits)
                return None
            case LibraryFinished():
                done = sum(1 for b in event.books if b.completed == b.total)
                line = f"Library: {done} of {len(event.books) + len(event.skipped)} books done"
                skipped = [
                    f"  skipped {one_line(str(path))}: {one_line(why)}"
                    for path, why in event.skipped.items()
                ]
                return "\n".join([line, *skipped])
            case RunFinished():
                summary = _summary(event)
                last = self._last_progress.get(event.title) or self._last_progress.get("")
                if last is not None:
                    summary = perf_line(last, self.server_limits) + "\n" + summary
                return summary
        return None

    def _count(self, book: str, number: int) -> str:
        """`[seen/total]` for this book, counting this event's chapter."""
        seen = self._seen.setdefault(book, set())
        seen.add(number)
        return f"[{len(seen)}/{self._total.get(book, '?')}]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary(event: RunFinished) -> str:
    done = f"{event.completed}/{event.total} chapters"
    spent = f" ({format_cost(event.cost)})" if event.cost is not None else ""
    where = one_line(str(event.out_dir))
    lines = [f"Done: {done}, {event.tokens:,} tokens{spent} -> {where}"]
    lines += [f"  {path.name}" for path in event.guides]
    for number, reason in sorted(event.failures.items()):
        lines.append(f"  chapter {number} failed: {one_line(reason)}")
    for unit, reason in event.image_failures.items():
        lines.append(f"  image of {one_line(unit)} failed: {one_line(reason)}")
    return "\n".join(lines)


def render_estimate(title: str, options: RunOptions, plan: Estimate, latency: str) -> str:
    """`latency`: where the time a request takes comes from (measured, assumed)."""
    config, limits = options.settings.provider, options.settings.limits
    pace = (
        "unpaced"
        if limits is None
        else (
            f"batches of {limits.batch_size}, {limits.batch_delay:g}s apart"
            + (f", {limits.rpm:g} rpm" if limits.rpm else "")
        )
    )
    spent = format_cost(plan.cost) if plan.cost is not None else f"unknown for {config.model}"
    if config.kind.value == "offline":
        spent = "$0 (offline analyzer, no API calls)"
    rows = [
        ("chapters", f"{plan.chapters}"),
        ("requests", f"{plan.requests}"),
        ("scenes", f"{plan.scenes}"),
        ("input tokens", f"{plan.input_tokens:,} ({plan.tokenizer})"),
        ("output tokens", f"~{plan.output_tokens:,} (planning figure)"),
        ("cost", spent),
        (
            "wall time",
            f"~{format_duration(plan.wall_seconds)} with {plan.workers} worker(s), {pace}; "
            f"{latency}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    model = one_line(config.model)
    lines = [f"Estimate for {one_line(repr(title))} with {config.kind.value} model {model}:"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if plan.timing_requests:
        lines.append("One short request timed the server; nothing else was sent.")
    else:
        lines.append("No request was sent.")
    return "\n".join(lines)
