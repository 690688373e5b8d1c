"""The live terminal display: an overall bar, one row per chapter being worked on (by any
process on the book), and a status line. Built on rich, which redraws in place on terminals
and which the plain view replaces when output is not a terminal."""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from imaginize.cli.progress import PlainProgress, format_duration, perf_line
from imaginize.events import (
    BookProgress,
    ChapterFailed,
    Event,
    LibraryFinished,
    Notice,
    RunFinished,
    RunStarted,
    ServerLimitsText,
)
from imaginize.safetext import for_terminal, one_line


class LiveProgress:
    """Feeds events to a rich Live display; lines that matter (notices, failures, the start
    and the summary) are printed above it, as in the plain view."""

    def __init__(self, stream: TextIO) -> None:
        self._console = Console(file=stream, stderr=True)
        self._lines = PlainProgress(stream)
        # The latest progress of each book (one, or several in a library run).
        self._progress: dict[str, BookProgress] = {}
        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=4,
            transient=True,
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._lines(event)
            self._live.start()
        elif isinstance(event, BookProgress):
            self._progress[event.book] = event
            self._lines.format(event)  # remembered for the final [PERF] line
        elif isinstance(event, Notice) and isinstance(event.message, ServerLimitsText):
            self._lines.format(event)  # shown in the status line, not printed
        elif isinstance(event, Notice | ChapterFailed):
            self._live.console.print(Text(_plain(self._lines, event)))
        elif isinstance(event, RunFinished | LibraryFinished):
            self._live.stop()
            self._lines(event)

    def close(self) -> None:
        self._live.stop()

    def _render(self) -> RenderableType:
        if not self._progress:
            return Text("starting workers…")
        return Group(*(self._render_book(p) for _, p in sorted(self._progress.items())))

    def _render_book(self, progress: BookProgress) -> RenderableType:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(1, progress.total), completed=progress.done, width=40),
            Text(f"{progress.done}/{progress.total} {one_line(progress.book)}".rstrip()),
        )
        now = time.time()
        rows = Table.grid(padding=(0, 2))
        for number, title, owner, claimed in sorted(progress.working):
            worker = owner.rsplit(":", 2)
            who = f"{worker[-2]}:{worker[-1]}" if len(worker) == 3 else owner
            rows.add_row(
                Text(f"ch {number}", style="bold"),
                Text(one_line(title)[:48]),
                Text(one_line(who), style="dim"),
                Text(format_duration(now - claimed) if claimed else ""),
            )
        status = perf_line(progress, self._lines.server_limits).removeprefix("[PERF] ")
        return Group(bar, rows, Text(status, style="cyan"))


def _plain(view: PlainProgress, event: Event) -> str:
    # The plain view knows the wording; reuse it rather than keep two copies. Shown as a
    # rich Text, never parsed as markup: "[bold red]" in a title stays as written.
    return for_terminal(view.format(event) or "")
