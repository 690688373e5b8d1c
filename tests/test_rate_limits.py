"""Rate limits shared by every process on one book, measured at the server."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI, hang, rate_limited
from tests.replies import answer
from tests.test_cli import SAMPLE, start_imaginize


@pytest.fixture
def book(tmp_path: Path) -> Path:
    copy = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, copy)
    return copy


def start(book: Path, url: str, *args: str) -> subprocess.Popen[str]:
    return start_imaginize(book, "-o", book.parent / "out", "--base-url", url, "-q", *args)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def chats(server: FakeOpenAI) -> list[dict[str, Any]]:
    return sorted(
        (r for r in server.requests if r["endpoint"] == "chat"), key=lambda r: r["t_mono"]
    )


def test_three_terminals_on_free_tier_share_one_pace(fake_openai: FakeOpenAI, book: Path) -> None:
    """Free tier: batches of 3 per window, one request at a time, across all processes."""
    fake_openai.script(responder=lambda body: {**answer(body), "delay": 0.15})
    window = 1.5
    pace = ["--tier", "free", "--batch-delay", str(window), "--concurrent", "2"]
    codes = finish([start(book, fake_openai.url, *pace) for _ in range(3)])
    assert codes == [0, 0, 0]
    sends = [r["t_mono"] for r in chats(fake_openai)]
    assert len(sends) == 8  # each chapter once, whoever did it
    # Batches of at most 3, with the window between the last send of one and the next batch.
    # (Receive times at the server: allow a little network jitter.)
    for first, fourth in zip(sends, sends[3:], strict=False):
        assert fourth - first >= window - 0.1
    # ...and one at a time: each request waited for the previous reply (0.15 s).
    for a, b in itertools.pairwise(sends):
        assert b - a >= 0.15 - 0.02


def test_a_429_pauses_every_worker(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(rate_limited(2))
    codes = finish([start(book, fake_openai.url, "--concurrent", "3", "--batch-delay", "0")])
    assert codes == [0]
    log = chats(fake_openai)
    limited = next(r for r in log if r["status"] == 429)
    t429 = limited["t_mono"]
    # Requests already on the wire when the 429 came back cannot be recalled; anything sent
    # once the pause is written (allow 0.25 s for that) waits out the Retry-After.
    later = [r["t_mono"] - t429 for r in log if r["t_mono"] > t429 + 0.25]
    assert len(later) >= 3, "the other workers went on after the pause"
    assert min(later) >= 2.0 - 0.05
    assert sum(1 for r in log if r["status"] == 200) == 8


def test_a_hanging_reply_hits_the_chapter_timeout(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(hang())
    began = time.monotonic()
    proc = start(
        book, fake_openai.url, "--chapter-timeout", "2", "--max-attempts", "1", "--batch-delay", "0"
    )
    (code,) = finish([proc])
    elapsed = time.monotonic() - began
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 1, stderr
    assert "timed out" in stderr
    assert elapsed < 30
    assert len(list((book.parent / "out" / "chapters").glob("*.json"))) == 7
