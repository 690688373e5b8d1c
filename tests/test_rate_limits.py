"""Rate limits shared by every process on one book, measured at the server."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from tests.fake_openai import FakeOpenAI, hang, rate_limited
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE, start_imaginize


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


def run_paced(
    book: Path, server: FakeOpenAI, *args: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI to the end, with a pace folder of its own (a pause it stores stays here)."""
    command = [sys.executable, "-m", "imaginize", book, "-o", book.parent / "out"]
    began = time.monotonic()
    result = subprocess.run(
        [*command, "--base-url", server.url, "--batch-delay", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLEAN_ENV, "XDG_CACHE_HOME": str(book.parent / "cache")},
        cwd=ROOT,
    )
    return result, time.monotonic() - began


def naming(lines: str, server: FakeOpenAI) -> list[str]:
    """Lines saying what the server asked (the server as host:port)."""
    return [line for line in lines.splitlines() if f"127.0.0.1:{server.port} asked" in line]


def test_a_server_asking_for_an_hour_stops_the_run_and_the_next_one(
    fake_openai: FakeOpenAI, book: Path
) -> None:
    """Retry-After: 3600 on one 429: the run stops at once with exit 3, nothing failed, one
    line naming the server and the time; the next run meets the stored pause and says so."""
    fake_openai.script(responder=lambda body: {**answer(body), "delay": 0.3})
    fake_openai.enqueue(rate_limited(3600))
    result, elapsed = run_paced(book, fake_openai, "--concurrent", "2")
    assert result.returncode == 3, result.stderr
    assert elapsed < 30  # not an hour
    limited = next(r for r in fake_openai.requests if r["status"] == 429)
    until = time.strftime("%H:%M:%S", time.localtime(limited["t_wall"] + 3600))
    (line,) = naming(result.stderr, fake_openai)
    assert re.search(r"asked to wait until \d\d:\d\d:\d\d", line)
    assert until[:5] in line and "--max-wait 300s" in line
    assert "Traceback" not in result.stderr and "worker" not in result.stderr
    manifest = ManifestStore(book.parent / "out").read()
    assert manifest is not None
    left = [e for e in manifest.chapters if e.status is not mf.Status.COMPLETED]
    assert left, "the run did not stop"
    # Given back, not failed: no attempt spent on chapters the server would not take.
    assert all((e.status, e.owner, e.attempts) == (mf.Status.PENDING, None, 0) for e in left)

    sent = len(fake_openai.requests)
    again, elapsed = run_paced(book, fake_openai)
    assert again.returncode == 3, again.stderr
    assert elapsed < 30
    (line,) = naming(again.stderr, fake_openai)
    assert "asked an earlier request to wait until" in line and until[:5] in line
    assert len(fake_openai.requests) == sent  # nothing sent into the pause


def test_a_stored_pause_within_max_wait_is_waited_out_unclaimed(
    fake_openai: FakeOpenAI, book: Path
) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(rate_limited(4))
    first, _ = run_paced(book, fake_openai, "--max-wait", "1")
    assert first.returncode == 3, first.stderr
    (limited,) = [r for r in fake_openai.requests if r["status"] == 429]
    result, _ = run_paced(book, fake_openai, "--max-wait", "30")
    assert result.returncode == 0, result.stderr
    (line,) = naming(result.stderr, fake_openai)
    assert re.search(r"to wait until \d\d:\d\d:\d\d: waiting \d+s", line)
    later = [r["t_wall"] for r in fake_openai.requests if r["t_wall"] > limited["t_wall"]]
    assert len(later) == 8
    assert min(later) >= limited["t_wall"] + 4 - 0.1
    manifest = ManifestStore(book.parent / "out").read()
    assert manifest is not None
    # No chapter was held through the pause, none timed out in it: one attempt each.
    assert [e.attempts for e in manifest.chapters] == [1] * 8
