"""The shared pace in Redis (--redis) and the token budget (--tpm), in both backends.

In-process: fakeredis runs the Lua scripts with an injected clock, and the same expectations
hold for the file pace. Across processes: CLI runs on one key against tests/fake_openai.py, the
pace in fakeredis's TCP server, and in a real `redis-server` where one is on PATH.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imaginize.analysis.openai.errors import call, request_tokens
from imaginize.pacing.pace import (
    LEARNED_CAP_IDLE,
    LINE_STALE,
    Limits,
    Pacer,
    SharedPace,
    pace_digest,
)
from tests.fake_openai import FakeOpenAI, rate_limited
from tests.local_servers import free_port
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE
from tests.test_pacing import Clock

fakeredis = pytest.importorskip("fakeredis")
pytest.importorskip("lupa")  # fakeredis runs Lua with it
pace_redis = pytest.importorskip("imaginize.pacing.redis_pace")

KEY = "sk-test-0123456789abcdef"
IMAGINIZE = [sys.executable, "-m", "imaginize"]
# Three workers a host, no batches: the rate is the only limit.
PACE = ["--concurrent", "3", "--batch-delay", "0"]


Make = Callable[[Limits], SharedPace]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server() -> Any:
    return fakeredis.FakeServer()


def redis_pacer(server: Any, clock: Clock, limits: Limits, **kwargs: Any) -> SharedPace:
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    return pace_redis.RedisPacer(
        "redis://fake",
        pace_digest(None, KEY),
        limits,
        client=client,
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


@pytest.fixture(params=["file", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, server: Any) -> Make:
    """A pacer of either backend on one shared pace; each call is another process."""
    if request.param == "file":
        return lambda limits: Pacer(tmp_path, limits, clock=clock, sleep=clock.sleep)
    return lambda limits: redis_pacer(server, clock, limits)


def test_rpm_spaces_sends_across_processes(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, rpm=60)
    one, two = make(limits), make(limits)
    starts = []
    for pacer in (one, two, one, two):
        with pacer.slot():
            starts.append(clock.now)
    # GCRA without burst: 60/rpm seconds apart, with the 2 % margin, whoever sends.
    assert [round(s - 1000.0, 6) for s in starts] == [0.0, 1.02, 2.04, 3.06]


@pytest.mark.slow
def test_tokens_are_reserved_then_refunded_to_the_usage(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, tpm=6000)  # 0.0102 s a token
    one, two = make(limits), make(limits)
    with one.slot(tokens=1000) as held:
        pass
    with two.slot(tokens=10):  # the whole reservation stands: 1000 tokens = 10.2 s
        assert clock.now == pytest.approx(1010.2)
    with one.slot(tokens=1000) as held:
        held.settle(400)  # the reply used 400: 600 given back
    with two.slot(tokens=10):
        # (Waits for tokens are taken in steps of TOKEN_POLL: to within a few ms.)
        assert clock.now == pytest.approx(1010.2 + 0.102 + 4.08, abs=0.01)
    held.settle(0)  # a second settle gives nothing more back
    with one.slot(tokens=1):
        assert clock.now == pytest.approx(1010.2 + 0.102 + 4.08 + 0.102, abs=0.01)


def test_no_tpm_means_no_token_wait(make: Make, clock: Clock) -> None:
    pacer = make(Limits(batch_size=100, batch_delay=0.0))
    for _ in range(3):
        with pacer.slot(tokens=10**6):
            pass
    assert clock.now == 1000.0


def test_in_flight_cap_is_shared_and_freed(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=1)
    one, two = make(limits), make(limits)
    with one.slot():
        assert len(two.read().in_flight) == 1
        assert two._attempt("other:1:x", 0)[0] is not None  # full while one's request runs
    assert two.read().in_flight == {}
    assert two._attempt("other:1:x", 0)[0] is None  # the one kept waiting goes at once
    two._give_back("other:1:x")
    with two.slot():
        assert clock.now == 1000.0


def test_a_learned_cap_holds_every_process_to_one_request(make: Make, clock: Clock) -> None:
    # Two under way at once is allowed, until a server is found to cut a reply short when
    # another request arrives: then one at a time, for the process that learned it and the
    # others alike; said once, and only ever lowered.
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=2)
    one, two = make(limits), make(limits)
    with one.slot():
        assert two._attempt("other:1:x", 0)[0] is None  # two at once
        two._give_back("other:1:x")
        assert two.cap_in_flight(1) is True
        assert one.cap_in_flight(1) is False  # already so: nobody says it again
        assert one.cap_in_flight(2) is False  # a learned cap never goes up
        assert two.read().in_flight_cap == 1
        assert two._attempt("other:1:y", 0)[0] is not None  # full while one's request runs
        assert one._attempt("other:1:z", 0)[0] is not None
    with two.slot():
        assert one._attempt("other:1:w", 0)[0] is not None


def test_the_one_kept_waiting_for_room_goes_next(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=1)
    one, two = make(limits), make(limits)
    with one.slot():
        assert two._attempt("two:1:b", 0)[0] is not None  # no room: two is next in line
        assert two.read().next_in_line == "two:1:b"
    assert one._attempt("one:1:a", 0)[0] is not None  # room, but two asked first
    assert two._attempt("two:1:b", 0)[0] is None
    two._give_back("two:1:b")
    clock.now += LINE_STALE  # one asks again later; nobody is in line
    assert one._attempt("one:1:a", 0)[0] is None


def test_a_learned_cap_lapses_after_an_idle_hour(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=2)
    one, two = make(limits), make(limits)
    with one.slot():
        pass
    assert one.cap_in_flight(1)
    clock.now += LEARNED_CAP_IDLE + 1  # the server may have been restarted otherwise since
    with one.slot():
        assert two._attempt("other:1:x", 0)[0] is None


def test_a_pause_holds_every_process(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0)
    one, two = make(limits), make(limits)
    assert one.pause(5.0, "HTTP 429") == pytest.approx(1005.0)
    assert one.pause(1.0, "shorter") == pytest.approx(1005.0)  # a longer one stands
    assert two.read().pause_reason == "HTTP 429"
    with two.slot():
        assert clock.now == pytest.approx(1005.0)


def test_unreachable_backs_off_and_reachable_ends_it(make: Make, clock: Clock) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0)
    one, two = make(limits), make(limits)
    assert one.unreachable("refused") == pytest.approx(1001.0)
    assert two.unreachable("refused") == pytest.approx(1002.0)
    assert two.read().unreachable_tries == 2
    one.reachable()
    state = two.read()
    assert (state.unreachable_since, state.unreachable_tries) == (0.0, 0)
    assert state.paused_until == pytest.approx(1000.0)


def test_the_keys_are_named_by_a_digest_never_the_key(server: Any, clock: Clock) -> None:
    pacer = redis_pacer(server, clock, Limits(batch_size=5, batch_delay=0.0, tpm=100))
    with pacer.slot(tokens=5):
        names = fakeredis.FakeRedis(server=server, decode_responses=True).keys("*")
    assert sorted(names) == [
        f"imaginize:pace:{pace_digest(None, KEY)}:flight",
        f"imaginize:pace:{pace_digest(None, KEY)}:state",
    ]
    assert not any(KEY in name or KEY[3:] in name for name in names)
    other = pace_digest("http://127.0.0.1:8080/v1", KEY)
    assert other != pace_digest(None, KEY)  # another server: another budget


@pytest.mark.slow
def test_a_redis_gone_away_holds_requests_until_it_is_back(server: Any) -> None:
    said: list[str] = []
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    pacer = pace_redis.RedisPacer(
        "redis://:secret@fake:6379/0",
        "d1",
        Limits(batch_size=100, batch_delay=0.0),
        client=client,
        notice=said.append,
    )
    server.connected = False
    done = threading.Event()

    def request() -> None:
        with pacer.slot():
            done.set()

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    time.sleep(1.0)
    assert not done.is_set(), "a request went on without Redis"
    server.connected = True
    assert done.wait(10)
    worker.join(5)
    assert len(said) == 2, said
    assert "unreachable" in said[0] and "requests wait until it is back" in said[0]
    assert "secret" not in said[0]  # the URL's password is not shown
    assert said[1] == "Redis at redis://:***@fake:6379/0 is back: requests go on"


def test_a_place_not_given_back_while_redis_was_away_is_freed_when_it_is_back(
    server: Any, clock: Clock
) -> None:
    limits = Limits(batch_size=100, batch_delay=0.0, max_in_flight=1)
    pacer = redis_pacer(server, clock, limits)
    with pacer.slot():
        server.connected = False  # goes away while the request runs
    server.connected = True
    with pacer.slot():  # not held up until the lost ticket expires (in_flight_ttl)
        assert clock.now == 1000.0


def test_call_reserves_the_request_and_settles_to_the_usage(tmp_path: Path) -> None:
    clock = Clock()
    pacer = Pacer(tmp_path, Limits(100, 0.0, tpm=60000), clock=clock, sleep=clock.sleep)
    params = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 900}
    assert request_tokens(params) == 100 + 900

    class Usage:
        total_tokens = 250

    reply = call(pacer, lambda: "reply", tokens=request_tokens(params), used=lambda r: Usage())
    assert reply == "reply"
    # 1000 reserved, 750 given back: the next request may go 250 tokens' time later.
    assert pacer.read().token_tat == pytest.approx(1000.0 + 250 * 0.00102)


@pytest.mark.slow
def test_a_servers_stated_limits_tighten_but_never_loosen(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    import openai

    pacer = Pacer(tmp_path, Limits(5, 0.0, rpm=100, tpm=50000), max_wait=60)
    client = openai.OpenAI(base_url=fake_openai.url, api_key=KEY, max_retries=0)
    for stated, expected in (
        ({"x-ratelimit-limit-requests": 60, "x-ratelimit-limit-tokens": 90000}, (60, 50000)),
        ({"x-ratelimit-limit-requests": 500, "x-ratelimit-limit-tokens": 1000}, (60, 1000)),
    ):
        fake_openai.enqueue(rate_limited(0, 1, headers=stated))
        with pytest.raises(Exception, match="HTTP 429"):
            call(
                pacer,
                lambda: client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                ),
            )
        assert (pacer.limits.rpm, pacer.limits.tpm) == expected


def test_a_refused_request_gives_its_tokens_back(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    import openai

    pacer = Pacer(tmp_path, Limits(5, 0.0, tpm=60000), max_wait=60)
    client = openai.OpenAI(base_url=fake_openai.url, api_key=KEY, max_retries=0)
    fake_openai.enqueue(rate_limited(0, 1))
    before = time.time()
    with pytest.raises(Exception, match="HTTP 429"):
        call(
            pacer,
            lambda: client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            ),
            tokens=30000,  # half a minute of the budget
        )
    assert pacer.read().token_tat < before + 1.0  # not before + 30 s


# -- across processes ---------------------------------------------------------------------


def host(tmp_path: Path, name: str, url: str, *args: str) -> subprocess.Popen[str]:
    """One simulated machine: its own copy of the book, output and cache folders (so no
    file pace is shared), one imaginize run with 3 workers."""
    folder = tmp_path / name
    folder.mkdir()
    book = folder / "sample.epub"
    shutil.copy(SAMPLE, book)
    env = {**CLEAN_ENV, "XDG_CACHE_HOME": str(folder / "cache"), "OPENAI_API_KEY": KEY}
    return subprocess.Popen(
        [*IMAGINIZE, str(book), "-o", str(folder / "out"), "--base-url", url, "-q", *PACE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def two_hosts(tmp_path: Path, server: FakeOpenAI, *args: str) -> list[dict[str, Any]]:
    procs = [host(tmp_path, name, server.url, *args) for name in ("one", "two")]
    try:
        for p in procs:
            _out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            p.kill()
    return sorted(
        (r for r in server.requests if r["endpoint"] == "chat"), key=lambda r: r["t_mono"]
    )


def first_refusal(tmp_path: Path, server: FakeOpenAI, *args: str) -> list[dict[str, Any]]:
    """The two hosts until the server refuses a request with 429 (then both are stopped: the
    controls need one refusal, not the minutes of waiting it out), or until both finish."""
    procs = [host(tmp_path, name, server.url, *args) for name in ("one", "two")]
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if any(r["status"] == 429 for r in server.requests if r["endpoint"] == "chat"):
                break
            if all(p.poll() is not None for p in procs):
                for p in procs:
                    assert p.returncode == 0, p.communicate()[1]
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    return [r for r in server.requests if r["endpoint"] == "chat"]


def aggregate_rpm(log: list[dict[str, Any]]) -> float:
    sends = [r["t_mono"] for r in log if r["status"] == 200]
    return (len(sends) - 1) / (sends[-1] - sends[0]) * 60.0


# The test server allows 10 requests in any 5 s: 120 a minute, enforced over short windows.
SERVER_LIMIT = {"rpm": 10, "rate_window": 5.0}


@pytest.mark.slow
def test_two_hosts_on_one_key_share_one_budget_in_redis(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    fake_openai.script(responder=answer, **SERVER_LIMIT)
    log = two_hosts(tmp_path, fake_openai, "--rpm", "120", "--redis", redis_url)
    assert [r["status"] for r in log].count(429) == 0
    assert sum(1 for r in log if r["status"] == 200) == 16  # 8 chapters on each host
    rate = aggregate_rpm(log)
    print(f"aggregate {rate:.1f} rpm of 120 ({redis_url})")
    assert 0.9 * 120 <= rate <= 120


@pytest.mark.slow
def test_without_redis_two_hosts_each_send_the_full_rate(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The control: the same two hosts with their own file paces overrun the server."""
    fake_openai.script(responder=answer, **SERVER_LIMIT)
    log = first_refusal(tmp_path, fake_openai, "--rpm", "120")
    limited = [r["status"] for r in log].count(429)
    print(f"without redis: {limited} requests refused with 429")
    assert limited > 0


@pytest.mark.slow
def test_a_wrong_redis_url_is_one_line_and_exit_2(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    env = {**CLEAN_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OPENAI_API_KEY": KEY}
    for url, reason in (
        (f"redis://:hunter2@127.0.0.1:{free_port()}/0", "cannot use it"),
        ("http://127.0.0.1:6379", "not a Redis URL"),
    ):
        result = subprocess.run(
            [*IMAGINIZE, str(book), "--base-url", fake_openai.url, "-q", "--redis", url],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--redis" in lines[0] and reason in lines[0], lines
        assert "hunter2" not in result.stderr
    assert not fake_openai.requests  # nothing was sent


@pytest.mark.slow
def test_a_redis_url_from_the_folders_settings_is_refused_for_a_key_from_elsewhere(
    tmp_path: Path,
) -> None:
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    (tmp_path / "imaginize.toml").write_text('[pace]\nredis_url = "redis://evil:6379/0"\n')
    env = {**CLEAN_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OPENAI_API_KEY": KEY}
    env.pop("IMAGINIZE_REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "imaginize", str(book), "-q"],
        capture_output=True,
        text=True,
        env={**env, "XDG_CONFIG_HOME": str(tmp_path / "config")},
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to share the pace" in result.stderr
    assert "imaginize.toml" in result.stderr


@pytest.mark.slow
def test_a_429_pause_in_redis_holds_the_other_host(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    fake_openai.script(responder=answer)
    fake_openai.enqueue(rate_limited(2))
    log = two_hosts(tmp_path, fake_openai, "--redis", redis_url)
    t429 = next(r["t_mono"] for r in log if r["status"] == 429)
    later = [r["t_mono"] - t429 for r in log if r["t_mono"] > t429 + 0.25]
    assert later and min(later) >= 2.0 - 0.05
    assert sum(1 for r in log if r["status"] == 200) == 16


# Every reply reports 200 tokens; the test server allows 1,000 in any 5 s (12,000 a minute).
TOKEN_LIMIT = {"tpm": 12000, "rate_window": 5.0}


def reporting_200_tokens(body: dict[str, Any]) -> dict[str, Any]:
    return {**answer(body), "usage": {"prompt_tokens": 150, "completion_tokens": 50}}


@pytest.mark.slow
def test_two_hosts_share_one_token_budget_in_redis(
    fake_openai: FakeOpenAI, tmp_path: Path, redis_url: str
) -> None:
    """Each request reserves its prompt and output cap (thousands of tokens: a request every
    15 s at this --tpm) and gets back all but the 200 its reply reports using: the aggregate
    follows the tokens used, and the server, counting the same tokens, refuses none."""
    fake_openai.script(responder=reporting_200_tokens, **TOKEN_LIMIT)
    log = two_hosts(tmp_path, fake_openai, "--tpm", "12000", "--redis", redis_url)
    assert [r["status"] for r in log].count(429) == 0
    assert sum(1 for r in log if r["status"] == 200) == 16
    tokens_per_minute = aggregate_rpm(log) * 200
    print(f"aggregate {tokens_per_minute:.0f} tokens/min of 12000 ({redis_url})")
    assert 0.9 * 12000 <= tokens_per_minute <= 12000


@pytest.mark.slow
def test_without_redis_two_hosts_each_spend_the_full_token_budget(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The control: the same two hosts with their own file paces overrun the token limit."""
    fake_openai.script(responder=reporting_200_tokens, **TOKEN_LIMIT)
    log = first_refusal(tmp_path, fake_openai, "--tpm", "12000")
    limited = [r["status"] for r in log].count(429)
    print(f"without redis: {limited} requests refused with 429")
    assert limited > 0


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~60 s of outage and recovery by design
def test_a_redis_restarted_mid_run_holds_requests_then_they_go_on(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH (Debian: apt install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return process
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    fake_openai.script(responder=lambda body: {**answer(body), "delay": 0.3})
    redis_server = start_redis()
    run = host(tmp_path, "one", fake_openai.url, "--redis", f"redis://127.0.0.1:{port}/0")
    try:
        fake_openai.wait_for_requests(2, timeout=60)
        redis_server.kill()
        redis_server.wait(10)
        stopped = time.monotonic()
        seen = len(fake_openai.requests)
        time.sleep(3.0)
        # Requests already on the wire finish; no new one starts without the pace.
        assert len(fake_openai.requests) <= seen + 3
        redis_server = start_redis()
        _out, err = run.communicate(timeout=120)
    finally:
        run.kill()
        redis_server.kill()
        redis_server.wait(10)
    assert run.returncode == 0, err
    later = [r for r in fake_openai.requests if r["t_mono"] > stopped + 3.0]
    assert later, "nothing was sent once Redis was back"
    assert err.count("is unreachable: requests wait until it is back") == 1, err
    assert err.count("is back: requests go on") == 1, err
