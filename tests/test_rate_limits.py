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

from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.events import ServerLimitsText
from imaginize.pacing.pace import Limits, Pacer
from imaginize.pacing.server_limits import StatedLimits
from tests.fake_openai import FakeOpenAI, hang, rate_limited
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE, start_imaginize
from tests.test_openai_provider import CHAPTER


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- a server's stated limits (x-ratelimit-* headers on successful replies) ---------------

STATED = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-tokens": "149000",
    "x-ratelimit-reset-tokens": "6m0s",
}


def test_stated_limits_are_read_from_the_headers() -> None:
    stated = StatedLimits.from_headers({k.upper(): v for k, v in STATED.items()})
    assert stated == StatedLimits(60, 150000, 59, 149000, 1.0, 360.0)
    assert stated.text() == "server: 60 rpm (59 left), 150,000 tpm (149,000 left)"
    assert stated.used_up() == 0
    spent = StatedLimits.from_headers({**STATED, "x-ratelimit-remaining-tokens": "0"})
    assert spent is not None and spent.used_up() == 360.0
    assert StatedLimits.from_headers({"x-request-id": "1"}) is None
    assert StatedLimits.from_headers({"x-ratelimit-limit-requests": "nan"}) is None


def analyzer_on(server: FakeOpenAI, pacer: Pacer) -> OpenAIAnalyzer:
    return OpenAIAnalyzer(
        model="fake-model", api_key="test", base_url=server.url, timeout=10, pacer=pacer
    )


@pytest.mark.parametrize("streamed", [True, False])
def test_a_successful_replys_limits_tighten_the_pace_never_loosen(
    fake_openai: FakeOpenAI, tmp_path: Path, streamed: bool
) -> None:
    """Over real HTTP, streamed and whole: the server states 20 requests per 5 s (240 rpm)
    and 50,000 tpm; the user's 600 rpm and 40,000 tpm become 240 rpm and 40,000 tpm."""
    fake_openai.script(
        responder=answer,
        rpm=20,
        rate_window=5.0,
        tpm=50000,
        ratelimit_headers=True,
        reject_stream=not streamed,
    )
    pacer = Pacer(tmp_path, Limits(5, 0.0, rpm=600, tpm=40000), max_wait=60)
    provider = analyzer_on(fake_openai, pacer)
    provider.analyze(CHAPTER, 1)
    assert (pacer.limits.rpm, pacer.limits.tpm) == (240, 40000)
    stated = [n for n in provider.take_notices() if isinstance(n, ServerLimitsText)]
    assert len(stated) == 1
    assert re.fullmatch(r"server: 240 rpm \(\d+ left\), 50,000 tpm \([\d,]+ left\)", stated[0])


@pytest.mark.slow
def test_a_budget_stated_used_up_pauses_everyone_until_its_reset(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    used_up = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}
    replies = itertools.count()
    fake_openai.script(
        responder=lambda body: {**answer(body), "headers": used_up if not next(replies) else {}}
    )
    pacer = Pacer(tmp_path, Limits(5, 0.0), max_wait=60)
    provider = analyzer_on(fake_openai, pacer)
    other = analyzer_on(fake_openai, Pacer(tmp_path, Limits(5, 0.0), max_wait=60))
    provider.analyze(CHAPTER, 1)
    other.analyze(CHAPTER, 1)  # another process on the key: it waits too
    first, second = (r["t_mono"] for r in chats(fake_openai))
    assert second - first >= 1.5 - 0.05
    assert [r["status"] for r in chats(fake_openai)] == [200, 200]


@pytest.mark.slow
def test_the_perf_lines_show_what_the_server_states(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer, rpm=100, rate_window=10.0, ratelimit_headers=True)
    run = start(book, fake_openai.url, "--rpm", "300", "--batch-delay", "0")
    _out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    perf = [line for line in err.splitlines() if line.startswith("[PERF]")]
    assert perf and re.search(r"\| server: 600 rpm \(\d+ left\)$", perf[-1]), err
    assert "warning: server:" not in err  # in the [PERF] lines, not a line of its own
