"""The library API as an embedding program uses it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import imaginize
from imaginize.errors import BookError, ConfigError
from imaginize.events import BookProgress, ChapterFinished, Event, RunFinished, RunStarted
from tests.fake_openai import FakeOpenAI
from tests.replies import answer
from tests.test_cli import SAMPLE


@pytest.fixture
def book(tmp_path: Path) -> Path:
    copy = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, copy)
    return copy


@pytest.mark.slow
def test_analyze_book_offline_with_events(book: Path) -> None:
    events: list[Event] = []
    finished = imaginize.analyze_book(
        book, output_dir=book.parent / "out", on_event=events.append, use_environment=False
    )
    assert finished.completed == finished.total == 8
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    done = [e for e in events if isinstance(e, ChapterFinished)]
    assert sorted(e.result.chapter for e in done) == list(range(1, 9))
    assert all(e.result.scenes for e in done)
    progress = [e for e in events if isinstance(e, BookProgress)]
    assert progress[-1].done == 8 and progress[-1].total == 8
    assert (book.parent / "out" / "Chapters.md").is_file()


@pytest.mark.slow
def test_analyze_book_over_http_with_options(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer)
    finished = imaginize.analyze_book(
        book,
        output_dir=book.parent / "out",
        base_url=fake_openai.url,
        model="fake-model",
        concurrent=2,
        chapters="1-3",
        use_environment=False,
    )
    assert (finished.completed, finished.total) == (3, 3)
    assert finished.tokens > 0
    assert len([r for r in fake_openai.requests if r["endpoint"] == "chat"]) == 3


def test_errors_are_raised_not_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BookError, match=r"missing\.epub"):
        imaginize.analyze_book(tmp_path / "missing.epub", use_environment=False)
    with pytest.raises(ConfigError):
        imaginize.analyze_book(SAMPLE, provider="openai", use_environment=False)
    assert capsys.readouterr() == ("", "")
