"""A server that goes away (a local server restarted): nobody spends attempts on it, every
worker waits for it and goes on when it is back; one that stays away stops the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ServerPaused
from imaginize.pacing.pace import Limits, Pacer
from tests.fake_openai import FakeOpenAI
from tests.local_servers import free_port
from tests.replies import answer
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE
from tests.test_pacing import Clock


def start_run(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    command = [sys.executable, "-m", "imaginize", book, "-o", tmp_path / "out"]
    command += ["--base-url", f"http://127.0.0.1:{port}/v1", "--batch-delay", "0", *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**CLEAN_ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        cwd=ROOT,
    )


@pytest.mark.slow
def test_a_server_that_comes_back_costs_no_attempt(tmp_path: Path) -> None:
    # Before: -j 2 burnt every attempt in ~45 s and marked chapters failed for good.
    port = free_port()
    run = start_run(tmp_path, port, "-j", "2", "--max-attempts", "2")
    try:
        time.sleep(6)  # refused all along: probes at 1, 2, 4 s
        with FakeOpenAI(port=port, responder=answer) as server:
            _out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
            assert len(server.requests) >= 8
    finally:
        run.kill()
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    assert {e.status for e in manifest.chapters} == {mf.Status.COMPLETED}
    assert all(e.attempts == 1 for e in manifest.chapters)
    said = [line for line in err.splitlines() if f"cannot reach 127.0.0.1:{port}" in line]
    assert said and all("Connection refused" in line for line in said)
    assert len(said) <= 2  # one line (per cause), not one per try or per worker


@pytest.mark.slow
def test_a_server_that_stays_away_stops_the_run_past_max_wait(tmp_path: Path) -> None:
    port = free_port()
    run = start_run(tmp_path, port, "-j", "2", "--max-wait", "5")
    try:
        _out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 3, err
    assert f"127.0.0.1:{port} has been unreachable since" in err
    assert "longer than --max-wait 5s" in err and "no chapter failed" in err
    assert "Traceback" not in err
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    assert all((e.status, e.attempts) == (mf.Status.PENDING, 0) for e in manifest.chapters)


def test_unreachable_backs_off_and_reachable_ends_the_wait(tmp_path: Path) -> None:
    clock = Clock()
    pacer = Pacer(tmp_path, Limits(5, 0.0), clock=clock, max_wait=60, server="s")
    assert pacer.unreachable("cannot reach s") == 1_001.0
    assert pacer.unreachable("cannot reach s") == 1_002.0
    assert pacer.unreachable("cannot reach s") == 1_004.0
    state = pacer.read()
    assert (state.unreachable_since, state.unreachable_tries) == (1_000.0, 3)
    clock.now += 1
    pacer.reachable()
    state = pacer.read()
    assert (state.unreachable_since, state.unreachable_tries) == (0.0, 0)
    assert state.paused_until <= clock.now  # nobody waits for a server that answered
    for _ in range(10):
        pacer.unreachable("cannot reach s")
    assert pacer.read().paused_until - clock.now == 30.0  # the backoff's cap
    clock.now += 61
    with pytest.raises(ServerPaused, match="unreachable since"):
        pacer.unreachable("cannot reach s")


@pytest.mark.slow
def test_a_plain_rerun_retries_what_failed_for_a_passing_reason(tmp_path: Path) -> None:
    # Before, chapters failed by a server's bad hour were skipped by every later run, without
    # a word; only --retry-failed took them up again.
    with FakeOpenAI(default={"kind": "error", "status": 503}) as server:
        first = start_run(tmp_path, server.port, "--max-attempts", "1", "--chapters", "1-3")
        _out, err = first.communicate(timeout=120)
        assert first.returncode == 1, err
        # One retry gets a 403 of its own: that failure waits for --retry-failed.
        server.script(responder=answer)
        server.enqueue({"kind": "error", "status": 403, "message": "Not allowed for this model."})
        second = start_run(tmp_path, server.port, "--max-attempts", "1", "--chapters", "1-3")
        _out, err = second.communicate(timeout=120)
    assert "chapters 1, 2, 3 failed for a passing reason" in err
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    failed = [e.number for e in manifest.chapters if e.status is mf.Status.FAILED]
    assert len(failed) == 1
    with FakeOpenAI(responder=answer) as server:
        third = start_run(tmp_path, server.port, "--max-attempts", "1", "--chapters", "1-3")
        _out, err = third.communicate(timeout=120)
        assert third.returncode == 1, err
        assert f"chapter {failed[0]} failed in an earlier run (HTTP 403 from 127.0.0.1:" in err
        assert "--retry-failed tries again" in err
        assert not server.requests  # nothing was sent for it
