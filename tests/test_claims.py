"""Work on a claimed unit: deadlines that stop the spending, not just the waiting."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from imaginize import cancel
from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.coordination import manifest as mf
from imaginize.coordination.claims import Abandoned, Heartbeat, StopFlag, within
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


@pytest.mark.slow
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


# --- stopping: a flag that within polls -----------------------------------------------------------


def test_a_stop_at_once_during_within_gives_the_work_up_and_cancels_it() -> None:
    """As in a worker: the SIGTERM handler (here SIGALRM's) runs in the main thread while it
    waits in within; it only sets the flag, and within notices at its next look."""
    stop = StopFlag()
    token = threading.Event()
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: stop.stop_now())
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(Abandoned):
            within(30, lambda: token.wait(30), "w", cancel=token, stop=stop)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 5  # not the 30 s of the work
    assert token.is_set()  # the abandoned work is told to stop spending


def test_a_stop_at_once_before_within_starts_no_work() -> None:
    stop = StopFlag()
    stop.stop_now()
    started = threading.Event()
    with pytest.raises(Abandoned):
        within(5, started.set, "w", stop=stop)
    assert not started.is_set()  # no request sent for a chapter about to be given back


def test_leaving_after_the_work_lets_it_finish() -> None:
    """Retirement (--concurrent auto shrinking) finishes the unit in hand."""
    stop = StopFlag()
    stop.finish_and_leave()
    assert within(5, lambda: time.sleep(0.2) or "done", "w", stop=stop) == "done"
    assert stop.requested and not stop.at_once


def test_work_that_finished_as_the_stop_came_is_kept() -> None:
    stop = StopFlag()

    def work() -> str:
        stop.stop_now()  # the stop lands as the work returns: its result is not thrown away
        return "done"

    assert within(5, work, "w", stop=stop) == "done"


def test_work_that_fails_because_it_was_given_up_is_not_its_failure() -> None:
    """Giving the work up shuts its connection (the token's cut-offs): the error the work
    then ends with must not be taken for its outcome (the unit would count a failure
    instead of going back uncounted)."""
    stop = StopFlag()
    token = cancel.Token()
    shut = threading.Event()

    def cut_off() -> None:
        shut.set()
        time.sleep(0.1)  # the work thread records its error meanwhile

    def work() -> None:
        token.add(cut_off)
        stop.stop_now()
        shut.wait(10)
        raise ProviderError("connection closed")

    with pytest.raises(Abandoned):
        within(10, work, "w", cancel=token, stop=stop)
