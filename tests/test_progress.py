"""The plain progress lines (what scripts and logs see)."""

from __future__ import annotations

import io
from pathlib import Path

from imaginize.cli.progress import PlainProgress
from imaginize.events import ChapterFailed, ChapterFinished, RunStarted
from imaginize.model import ChapterResult


def finished(number: int) -> ChapterFinished:
    result = ChapterResult(number, f"Chapter {number}", 100, "offline", "heuristic", (), ())
    return ChapterFinished(result, 0.1, "w1")


def test_the_count_is_of_chapters_so_a_chapter_reported_twice_counts_once() -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress(RunStarted(Path("b.epub"), "B", Path("out"), "offline", "heuristic", "", 3, 3))
    # Chapter 2 is redone by another terminal's --force while this run watches; chapter 3
    # fails, is retried (--retry-failed elsewhere) and then finishes.
    for event in (finished(1), finished(2), ChapterFailed(3, "boom"), finished(2), finished(3)):
        progress(event)
    counts = [line.split()[0] for line in stream.getvalue().splitlines() if line.startswith("[")]
    assert counts == ["[1/3]", "[2/3]", "[3/3]", "[3/3]", "[3/3]"]
