"""A server that cuts a streamed reply short when another request arrives (llama-cpp-python's
default `interrupt_requests`), imitated by tests/fake_openai.py's `interrupt_requests`: the
first cut makes every process on the key send one request at a time, and the cut request is
asked again at no attempt's cost. Over real HTTP, with real worker processes, in both pace
backends.

Before: with -j 2 the two workers cut each other's replies until attempts ran out (the
benchmark's run 1: 0 of 8 chapters)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ProviderError
from imaginize.pacing.pace import Limits, Pacer
from imaginize.reading.epub import read_book
from tests.fake_openai import FakeOpenAI
from tests.local_servers import fakeredis_tcp
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE
from tests.test_recorded_llama_cpp import recorded

SAID = "cuts a reply short when another request arrives: requests now go one at a time"
# Seconds per 16 characters of a reply: a chapter's reply streams for about half a second.
TOKEN_DELAY = 0.002


def slow_replies() -> Any:
    """The well-behaved model, streaming at a local model's pace; its first reply is slow
    enough (about 20 s) that the second worker's request surely arrives while it streams."""
    first = threading.Event()

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        slow = not first.is_set()
        first.set()
        return {**answer(body), "token_delay": 0.1 if slow else TOKEN_DELAY}

    return respond


def test_the_fake_server_cuts_a_stream_when_another_request_waits() -> None:
    with FakeOpenAI(
        interrupt_requests=True, default={"content": "x" * 800, "token_delay": 0.05}
    ) as server:
        client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)
        finishes: dict[str, str | None] = {}

        def stream(name: str) -> None:
            chunks = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": name}], stream=True
            )
            finishes[name] = None
            for chunk in chunks:
                for choice in chunk.choices:
                    finishes[name] = choice.finish_reason or finishes[name]

        first = threading.Thread(target=stream, args=("first",))
        first.start()
        server.wait_for_requests(1)
        stream("second")
        first.join(10)
    assert finishes == {"first": None, "second": "stop"}
    assert [r.get("interrupted", False) for r in server.requests] == [True, False]


def cut_stream() -> dict[str, Any]:
    """The stream llama-cpp-python really sent when another request arrived (recorded)."""
    sse = recorded("stream_interrupted")["sse"]
    body = "\n".join(sse) + "\n"
    return {"kind": "malformed", "status": 200, "body": body, "content_type": "text/event-stream"}


def analyzer(server: FakeOpenAI, tmp_path: Path) -> tuple[OpenAIAnalyzer, Pacer]:
    pacer = Pacer(tmp_path, Limits(batch_size=5, batch_delay=0.0, max_in_flight=5))
    subject = OpenAIAnalyzer(model="m", api_key="x", base_url=server.url, pacer=pacer)
    return subject, pacer


def test_a_cut_reply_is_asked_again_one_at_a_time(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(cut_stream())
    subject, pacer = analyzer(fake_openai, tmp_path)
    analysis = subject.analyze(read_book(SAMPLE).chapters[0], 2)
    assert analysis.scenes
    assert len(fake_openai.requests) == 2
    assert pacer.read().in_flight_cap == 1
    assert sum(SAID in notice for notice in subject.take_notices()) == 1


def test_a_reply_cut_again_one_at_a_time_names_another_client(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(cut_stream(), cut_stream())
    subject, _pacer = analyzer(fake_openai, tmp_path)
    with pytest.raises(ProviderError) as caught:
        subject.analyze(read_book(SAMPLE).chapters[0], 2)
    assert caught.value.retryable
    assert len(fake_openai.requests) == 2  # asked again once, not for ever
    assert "something else is using it" in str(caught.value)
    assert "-j 1" not in str(caught.value)  # one at a time already


def run(tmp_path: Path, server: FakeOpenAI, *args: str) -> tuple[int, str]:
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    command = [sys.executable, "-m", "imaginize", str(book), "-o", str(tmp_path / "out")]
    command += ["--base-url", server.url, "-j", "2", "--max-attempts", "2", *args]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        env={**CLEAN_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        cwd=ROOT,
    )
    return done.returncode, done.stderr


def assert_one_at_a_time_after_the_cut(tmp_path: Path, server: FakeOpenAI, err: str) -> None:
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.COMPLETED}
    assert all(e.attempts == 1 for e in manifest.chapters)  # the cut cost no attempt
    assert sum(SAID in line for line in err.splitlines()) == 1, err
    assert "ended a reply unfinished" not in err
    chats = sorted(
        (r for r in server.requests if r["endpoint"] == "chat"), key=lambda r: r["t_mono"]
    )
    cut = [r for r in chats if r.get("interrupted")]
    assert len(cut) == 1  # the first two met once, and never again
    # Asked again as soon as the request that cut it ends, not after every other chapter
    # (which the chapter's timeout would not wait for on a real local model).
    again = [r for r in chats if r is not cut[0] and r["body"] == cut[0]["body"]]
    assert again and chats.index(again[0]) <= chats.index(cut[0]) + 2
    after = [r for r in chats if r is not cut[0] and r["ended"] > cut[0]["ended"]]
    for earlier, later in itertools.pairwise(after):
        assert later["t_mono"] >= earlier["ended"], "two replies under way at once"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(interrupt_requests=True, responder=slow_replies()) as fake:
        yield fake


@pytest.mark.slow
def test_two_workers_learn_to_go_one_at_a_time(tmp_path: Path, server: FakeOpenAI) -> None:
    code, err = run(tmp_path, server)
    assert code == 0, err
    assert_one_at_a_time_after_the_cut(tmp_path, server, err)


@pytest.mark.slow
def test_two_workers_learn_it_through_redis(tmp_path: Path, server: FakeOpenAI) -> None:
    pytest.importorskip("fakeredis")
    pytest.importorskip("lupa")
    redis = pytest.importorskip("redis")
    with fakeredis_tcp() as url:
        code, err = run(tmp_path, server, "--redis", url)
        client = redis.Redis.from_url(url, decode_responses=True)
        caps = [client.hget(key, "in_flight_cap") for key in client.keys("imaginize:pace:*:state")]
    assert code == 0, err
    assert_one_at_a_time_after_the_cut(tmp_path, server, err)
    # The cap lives in Redis, where every host would see it; the file pace was not used.
    assert caps == ["1"]
    assert not list((tmp_path / "cache").rglob(".imaginize.rate.json"))
