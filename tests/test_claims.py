"""Work on a claimed unit: deadlines that stop the spending, not just the waiting."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from imaginize import cancel
from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.coordination import manifest as mf
from imaginize.coordination.claims import Heartbeat, Interrupts, Stop, within
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ProviderError
from imaginize.model import Chapter
from imaginize.pacing.pace import Limits, Pacer
from tests.fake_openai import FakeOpenAI
from tests.replies import answer


def test_work_past_its_deadline_is_cancelled_at_its_next_step() -> None:
    steps: list[int] = []
    stopped = threading.Event()

    def work() -> None:
        try:
            for step in range(100):
                cancel.check()
                steps.append(step)
                time.sleep(0.05)
        finally:
            stopped.set()

    with pytest.raises(ProviderError, match="timed out"):
        within(0.2, work, "slow")
    assert stopped.wait(2.0), "the abandoned work kept going"
    assert len(steps) < 10


def test_an_earlier_cancel_from_the_caller_stops_it_too() -> None:
    token = threading.Event()
    token.set()
    with pytest.raises(cancel.Cancelled):
        within(5.0, cancel.check, "cancelled-early", token)


def test_a_timed_out_chapter_sends_no_more_requests(tmp_path: Path) -> None:
    """A long chapter in many chunks against a slow server: after the deadline, the thread
    left behind must not go on through the remaining chunks."""
    text = "\n\n".join(
        f"Paragraph {n}: the lantern swung over the grey harbour wall at dusk." for n in range(200)
    )
    chapter = Chapter(1, "Long", text)
    with FakeOpenAI(responder=lambda body: {**answer(body), "delay": 0.4}) as server:
        pacer = Pacer(tmp_path, Limits(batch_size=100, batch_delay=0.0))
        analyzer = OpenAIAnalyzer(model="m", api_key="k", base_url=server.url, pacer=pacer)
        with pytest.raises(ProviderError, match="timed out"):
            within(
                0.6,
                lambda: analyze_chapter(chapter, analyzer, max_chunk_tokens=500),
                "chapter-1",
            )
        time.sleep(1.5)  # long enough for several more chunks, had it gone on
        sent = len(server.requests)
    assert 1 <= sent <= 3


def test_a_lost_claim_cancels_the_work(tmp_path: Path) -> None:
    """The heartbeat finds the claim taken over: the work in hand is told to stop."""
    store = ManifestStore(tmp_path)
    store.join(book_path="b", sha256="s", title="T", chapters=[(1, "One")])
    mine = store.claim("host:1:w1", lease=600, max_attempts=3)
    assert mine is not None
    # Another worker takes the chapter over, as it would once our lease had run out.
    theirs = store.transact(
        lambda m: mf.claim(m, "host:2:w2", time.time() + 10_000, lease=600, max_attempts=3)
    )
    assert theirs is not None and theirs.token > mine.token
    seen = []

    def work() -> None:
        for _ in range(200):
            cancel.check()
            seen.append(1)
            time.sleep(0.01)

    with pytest.raises(cancel.Cancelled), Heartbeat(store, 1, mine.token, 0.05) as beat:
        within(10.0, work, "lost", cancel=beat.lost)
    assert len(seen) < 100


# --- when a stop may interrupt the main thread -------------------------------------------------


def test_a_stop_outside_a_wait_is_only_recorded() -> None:
    interrupts = Interrupts()
    interrupts.stop()  # e.g. between a claim and the code that would release it: no raise
    assert interrupts.requested.is_set()


def test_a_stop_during_the_wait_interrupts_it_once() -> None:
    interrupts = Interrupts()
    with pytest.raises(Stop), interrupts.waiting():
        interrupts.stop()
        pytest.fail("the wait went on")
    # The release that follows must not be cut short by a second signal.
    interrupts.stop()


def test_a_stop_just_before_the_wait_ends_it_before_it_starts() -> None:
    interrupts = Interrupts()
    interrupts.stop()
    entered = False
    with pytest.raises(Stop), interrupts.waiting():
        entered = True
    assert not entered


def test_a_stop_during_within_gives_the_work_up_and_cancels_it() -> None:
    """As in a worker: the SIGTERM handler (here SIGALRM's) runs in the main thread while it
    waits in within's join."""
    interrupts = Interrupts()
    token = threading.Event()
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: interrupts.stop())
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(Stop):
            within(30, lambda: token.wait(30), "w", cancel=token, interrupts=interrupts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10  # not the 30 s of the work
    assert token.is_set()  # the abandoned work is told to stop spending


def _stop_twice(at: int) -> tuple[bool, int]:
    """Call Interrupts.stop() in a thread, and stop() again (the second signal's handler) at
    its `at`-th traced line (0: never). Whether it finished in 5 s, and how many lines it
    ran (up to the second call)."""
    interrupts = Interrupts()
    seen = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == at:
                sys.settrace(None)
                interrupts.stop()
        return tracer

    def first() -> None:
        sys.settrace(tracer)
        try:
            interrupts.stop()
        finally:
            sys.settrace(None)
        done.set()

    done = threading.Event()
    threading.Thread(target=first, daemon=True).start()
    finished = done.wait(5)
    return finished and interrupts.requested.is_set(), seen


def test_a_second_stop_landing_anywhere_inside_the_first_does_not_hang() -> None:
    """Two SIGTERMs microseconds apart: the second handler runs in the same thread, in the
    middle of the first (threading.Event.set, which takes a lock, hung a worker on it)."""
    finished, lines = _stop_twice(0)  # at no line: how many lines one stop runs
    assert finished and lines > 0
    for at in range(1, lines + 1):
        finished, _ = _stop_twice(at)
        assert finished, f"a second stop at line {at} of the first hung it"


def test_a_stop_recorded_before_within_starts_no_work() -> None:
    interrupts = Interrupts()
    interrupts.stop()
    started = threading.Event()
    with pytest.raises(Stop):
        within(5, started.set, "w", interrupts=interrupts)
    assert not started.is_set()  # no request sent for a chapter about to be given back
