"""Work given up on lets go at once of what it holds: its pacer slot and its connection, over
real HTTP against the local fake server."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imaginize import cancel
from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.cancel import Token
from imaginize.coordination import manifest as mf
from imaginize.coordination.claims import within
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ProviderError
from imaginize.model import Book, Chapter
from imaginize.pacing.pace import Limits, Pacer
from imaginize.reading.epub import book_fingerprint
from imaginize.settings import ClaimPolicy, RunSettings
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.worker import run_worker
from tests.fake_openai import FakeOpenAI, hang
from tests.replies import answer

TEXT = (
    "The lighthouse stood black against a copper sky. Wren climbed the spiral stair with "
    "the tin lantern swinging in her hand.\n\n"
    "At the top the great lens waited, cold and clouded. She wiped it with her sleeve until "
    "a thin blue light shivered in the glass."
)
# One request at a time, and a place held for a minute unless given back: the free tier's cap.
ONE_AT_A_TIME = Limits(batch_size=10, batch_delay=0.0, max_in_flight=1, in_flight_ttl=60.0)


def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def closed_by_client(server: FakeOpenAI) -> int:
    """Server-side connections whose client has closed them while their handler is still
    busy (a hanging answer): a peek at a closed connection reads end-of-file at once."""
    closed = 0
    with server._conns_lock:  # the test server's own record of its open connections
        conns = list(server._conns)
    for conn in conns:
        try:
            # select first: the handler's socket has a timeout, and Python waits that long
            # for a recv on it whatever the flags.
            readable, _, _ = select.select([conn], [], [], 0)
            if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except (OSError, ValueError):
            pass  # closed on the server's side meanwhile: not what this counts
    return closed


def never_waits(seconds: float) -> None:
    raise AssertionError(f"the slot was still held: asked to wait {seconds:.2f}s")


@pytest.mark.slow
def test_a_request_given_up_at_its_deadline_lets_go_of_slot_and_connection(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.enqueue(hang(30))
    pacer = Pacer(tmp_path, ONE_AT_A_TIME)
    analyzer = OpenAIAnalyzer(
        model="fake-model", api_key="test", base_url=fake_openai.url, timeout=60, pacer=pacer
    )
    with pytest.raises(ProviderError, match="timed out"):
        within(0.5, lambda: analyzer.analyze(Chapter(1, "One", TEXT), 1), "chapter-1", Token())
    # The slot is free the moment the deadline passed: another request takes it at once.
    assert pacer.read().in_flight == {}
    with Pacer(tmp_path, ONE_AT_A_TIME, sleep=never_waits).slot():
        pass
    # And the connection is shut: the server sees it closed while it still "works".
    assert eventually(lambda: closed_by_client(fake_openai) == 1)


@pytest.mark.slow
def test_a_chapter_past_its_timeout_frees_the_slot_for_its_retry(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The worker's timeout path: the retry's request goes at once (before, it waited for
    the abandoned request's place to expire, and timed out without sending anything)."""
    fake_openai.script(responder=answer)
    fake_openai.enqueue(hang(30))
    book = Book(tmp_path / "b.epub", "B", "A", "en", (Chapter(1, "One", TEXT),))
    book.path.write_bytes(b"a stand-in for the EPUB")
    out = tmp_path / "out"
    ManifestStore(out).join(
        book_path=str(book.path),
        sha256=book_fingerprint(book.path),
        title="B",
        chapters=[(1, "One")],
    )
    provider = ProviderConfig(
        ProviderKind.OPENAI, "fake-model", api_key="test", base_url=fake_openai.url, timeout=60
    )
    settings = RunSettings(
        provider, limits=ONE_AT_A_TIME, claims=ClaimPolicy(max_attempts=3), chapter_timeout=1.0
    )
    spec = WorkerSpec(str(book.path), str(out), settings, pace_dir=str(tmp_path / "pace"))
    started = time.monotonic()
    assert run_worker(spec, "w1", book=book) == 1
    assert time.monotonic() - started < 15
    entry = ManifestStore(out).read().entry(1)  # type: ignore[union-attr]
    assert (entry.status, entry.attempts) == (mf.Status.COMPLETED, 2)
    assert [r["kind"] for r in fake_openai.requests] == ["hang", "reply"]
    assert closed_by_client(fake_openai) == 1


def test_a_cutoff_runs_once_when_the_token_is_set_and_not_after_its_block() -> None:
    token = Token()
    cuts: list[str] = []
    done = threading.Event()

    def work() -> None:
        cancel.bind(token)
        with cancel.guarded(lambda: cuts.append("slot")):
            cancel.guard(lambda: cuts.append("connection"))
        with cancel.guarded(lambda: cuts.append("held")):
            done.set()
            time.sleep(0.2)

    thread = threading.Thread(target=work)
    thread.start()
    done.wait(2)
    token.set()
    thread.join()
    assert cuts == ["held"]  # the first block had ended: nothing of it is cut
    token.add(lambda: cuts.append("late"))  # a token already set cuts at once
    assert cuts == ["held", "late"]
