"""--estimate: the plan, the arithmetic, and not one request sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imaginize.analysis.estimate import estimate, wall_time
from imaginize.cli.main import main
from imaginize.model import Chapter
from imaginize.pacing.pace import Limits, Tier
from tests.fake_openai import FakeOpenAI
from tests.test_cli import SAMPLE


def test_wall_time_follows_workers_and_pacing() -> None:
    assert wall_time(10, 2, 10.0, None) == 50.0
    free = Limits.for_tier(Tier.FREE)  # one at a time, 3 a batch, 60 s after the batch
    # 6 requests of 20 s: two batches; the 60 s gap costs 40 s beyond the last reply.
    assert wall_time(6, 4, 20.0, free) == 6 * 20 + 40
    paid = Limits.for_tier(Tier.PAID)
    assert wall_time(10, 5, 1.0, paid) == pytest.approx(2.0 + 1.0)
    assert wall_time(10, 5, 1.0, Limits(5, 0.0, rpm=60)) == pytest.approx(9 * 1.0 + 1.0)
    assert wall_time(0, 3, 5.0, paid) == 0.0


def test_estimate_counts_requests_scenes_and_chunks() -> None:
    long = Chapter(1, "Long", "\n\n".join(["word " * 300] * 20))  # 6000 words, chunked
    short = Chapter(2, "Short", "A brief and quiet chapter.")
    plan = estimate(
        [long, short],
        model="gpt-4o-mini",
        book_title="T",
        pages_per_image=1.0,
        max_chunk_tokens=2000,
        limits=None,
        workers=1,
    )
    assert plan.chapters == 2
    assert plan.requests > 2  # the long chapter is split
    assert plan.scenes == 20 + 1
    assert plan.input_tokens > 6000
    assert plan.cost is not None and plan.cost > 0


def test_estimate_sends_nothing(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = tmp_path / "book.epub"
    shutil.copy(SAMPLE, book)
    args = [str(book), "--estimate", "--base-url", fake_openai.url, "--api-key", "k"]
    args += ["--assume-latency", "20"]
    assert main([*args, "--model", "gpt-4o-mini", "--tier", "free", "-j", "3"]) == 0
    shown = capsys.readouterr().out
    assert "requests       8" in shown and "No request was sent." in shown
    assert "20 s a request (--assume-latency)" in shown
    assert "$" in shown and "batches of 3, 60s apart" in shown
    assert fake_openai.requests == []
    assert not (tmp_path / "imaginize_book").exists()  # nothing written either


@pytest.mark.slow
def test_a_local_server_is_timed_with_one_short_request(
    fake_openai: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A local model's speed: 1 s to read the prompt, 20 tokens a second. The hosted figure
    # (20 s a request) predicted 1 min 40 s for a run that took over 10 minutes.
    fake_openai.script(default={"kind": "loop", "delay": 1.0, "token_delay": 0.05})
    book = tmp_path / "book.epub"
    shutil.copy(SAMPLE, book)
    assert main([str(book), "--estimate", "--base-url", fake_openai.url]) == 0
    shown = capsys.readouterr().out
    assert len(fake_openai.requests) == 1
    assert fake_openai.requests[0]["body"]["max_tokens"] == 48
    assert "One short request timed the server; nothing else was sent." in shown
    line = next(line for line in shown.splitlines() if "wall time" in line)
    assert "measured" in line
    rate = float(line.split("tokens/s")[0].rsplit(",", 1)[1].strip().split()[0])
    assert 10 <= rate <= 25
    # ~1,000 planned reply tokens a request at 20/s: near a minute, not the hosted 20 s.
    assert int(line.split(" s a request")[0].split()[-1]) > 40
    assert not (tmp_path / "imaginize_book").exists()


def test_a_hosted_estimate_says_what_it_assumes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SAMPLE), "--estimate", "--api-key", "sk-test-key"]) == 0
    assert "20 s a request, typical of a hosted API" in capsys.readouterr().out
