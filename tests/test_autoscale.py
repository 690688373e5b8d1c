"""The --concurrent auto controller, fed by hand."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imaginize.workers.autoscale import WINDOW, AutoScaler, initial_workers, process_rss
from tests.fake_openai import FakeOpenAI, rate_limited
from tests.replies import answer
from tests.test_cli import SAMPLE, imaginize


def warmed(target: int = 3, baseline: float = 1.0, **kwargs: int) -> AutoScaler:
    scaler = AutoScaler(target, **kwargs)
    for _ in range(3):
        scaler.chapter_done(baseline)
    assert scaler.baseline == baseline
    return scaler


def test_start_is_cpus_minus_one_capped_at_four() -> None:
    assert initial_workers(cpus=2) == 1
    assert initial_workers(cpus=1) == 1
    assert initial_workers(cpus=16) == 4
    assert initial_workers(cpus=16, max_workers=2) == 2


def test_the_first_chapters_set_the_baseline_without_changes() -> None:
    scaler = AutoScaler(3)
    assert [scaler.chapter_done(s) for s in (1.0, 3.0, 2.0)] == [3, 3, 3]
    assert scaler.baseline == 2.0


def test_grows_while_latency_stays_near_the_baseline_up_to_the_max() -> None:
    scaler = warmed(target=5, max_workers=6)
    targets = [scaler.chapter_done(1.1) for _ in range(3 * WINDOW)]
    assert targets[WINDOW - 1] == 6
    assert max(targets) == 6


def test_shrinks_when_latency_doubles_but_never_below_one() -> None:
    scaler = warmed(target=2)
    for _ in range(4 * WINDOW):
        scaler.chapter_done(2.5)
    assert scaler.target == 1


def test_holds_between_the_thresholds() -> None:
    scaler = warmed(target=3)
    for _ in range(3 * WINDOW):
        scaler.chapter_done(1.5)
    assert scaler.target == 3


def test_a_429_removes_a_worker_and_restarts_the_window() -> None:
    scaler = warmed(target=3)
    for _ in range(WINDOW - 1):
        scaler.chapter_done(1.0)
    assert scaler.rate_limited() == 2
    assert scaler.chapter_done(1.0) == 2  # the window starts over after a change


def test_memory_guard_drops_to_one() -> None:
    scaler = warmed(target=4, memory_limit=1000)
    assert scaler.memory(999) == 4
    assert scaler.memory(1001) == 1


def test_rss_of_this_process_is_known_on_linux() -> None:
    if os.path.exists("/proc/self/statm"):
        assert process_rss(os.getpid()) > 1024 * 1024
    assert process_rss(2**22 + 12345) == 0


@pytest.mark.slow
def test_auto_pool_finishes_a_book_through_a_429(tmp_path: Path) -> None:
    """Through the CLI: --concurrent auto starts its pool and, with a 429 on the way (which
    the controller answers by shrinking when it has workers to spare), every chapter is
    still done exactly once."""
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    with FakeOpenAI(responder=answer) as server:
        server.enqueue(rate_limited(0.5))
        result = imaginize(
            book,
            "-o",
            tmp_path / "out",
            "--base-url",
            server.url,
            "-j",
            "auto",
            "--max-workers",
            "3",
            "--batch-delay",
            "0",
        )
        assert result.returncode == 0, result.stderr
        ok = [r for r in server.requests if r["endpoint"] == "chat" and r["status"] == 200]
        assert len(ok) == 8
    assert len(list((tmp_path / "out" / "chapters").glob("*.json"))) == 8


def test_a_server_answering_in_turn_settles_at_one_worker() -> None:
    # A llama.cpp server with one slot: two requests at once each take twice as long.
    scaler = warmed(target=1, baseline=10.0)
    targets = [scaler.chapter_done(10.0) for _ in range(WINDOW)]
    assert targets[-1] == 2 and not scaler.queueing
    targets = [scaler.chapter_done(20.0) for _ in range(WINDOW)]
    assert targets[-1] == 1 and scaler.queueing and scaler.ceiling == 1
    # Back at one, fast again: it does not try two again.
    assert {scaler.chapter_done(10.0) for _ in range(3 * WINDOW)} == {1}


def test_a_worker_that_pays_is_kept() -> None:
    scaler = warmed(target=1, baseline=10.0)
    for _ in range(WINDOW):
        scaler.chapter_done(10.0)
    assert scaler.target == 2
    for _ in range(WINDOW):
        scaler.chapter_done(11.0)  # two at once, barely slower each: nearly twice the rate
    assert scaler.target == 3 and not scaler.queueing


@pytest.mark.slow
def test_auto_settles_at_one_on_a_server_that_answers_in_turn(tmp_path: Path) -> None:
    """Through the CLI against a one-slot server (llama.cpp's default): the pool starts at one
    worker for a local server, tries two, finds each chapter twice as slow and goes back to
    one, saying so once."""
    from tests.epubs import build_epub

    story = "<p>The lantern swung over the wall while Mara counted the glowing fruit.</p>" * 3
    book = build_epub(tmp_path / "many.epub", [(f"Chapter {n}", story) for n in range(1, 19)])
    with FakeOpenAI(responder=lambda body: {**answer(body), "delay": 0.6}, slots=1) as server:
        result = imaginize(
            book, "-o", tmp_path / "out", "--base-url", server.url, "-j", "auto",
            "--batch-delay", "0",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "gains nothing from more" in line]
    assert len(said) == 1
    assert said[0].endswith(
        "the server gains nothing from more than 1 request(s) at once (it answers them in "
        "turn): keeping 1 worker(s)"
    )
    assert len(list((tmp_path / "out" / "chapters").glob("*.json"))) == 18
