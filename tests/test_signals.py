"""A Ctrl-C at any moment of start-up ends quietly: no traceback, status 130."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.coordination import manifest as mf
from imaginize.coordination.store import ManifestStore
from imaginize.reading.epub import book_fingerprint, read_book
from imaginize.settings import RunSettings
from imaginize.workers.spec import WorkerSpec
from tests.fake_openai import FakeOpenAI
from tests.replies import answer
from tests.test_cli import ROOT, SAMPLE, start_imaginize


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.8, 1.3, 2.0])
@pytest.mark.slow
def test_ctrl_c_during_start_up(tmp_path: Path, delay: float) -> None:
    book = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, book)
    with FakeOpenAI(responder=lambda body: {**answer(body), "delay": 1.0}) as server:
        proc = start_imaginize(
            book, "-o", tmp_path / "out", "--base-url", server.url, "-j", "2", "-q"
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert "Traceback" not in stderr, stderr
    # Before Python has installed its own handler the default action ends it (-SIGINT).
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, stderr)


@pytest.mark.parametrize("signals", [1, 2, 5])
@pytest.mark.slow
def test_sigterms_to_a_working_worker_give_its_chapter_back(tmp_path: Path, signals: int) -> None:
    """A worker process told to stop (SIGTERM, any number of them back to back) while its
    request is out: its handler only sets a flag, the wait for the reply notices it, the
    chapter goes back uncounted and the worker ends with 130."""
    book = read_book(SAMPLE)
    out = tmp_path / "out"
    ManifestStore(out).join(
        book_path=str(SAMPLE),
        sha256=book_fingerprint(SAMPLE),
        title=book.title,
        chapters=[(c.number, c.title) for c in book.chapters],
    )
    with FakeOpenAI(responder=lambda body: {**answer(body), "delay": 30.0}) as server:
        provider = ProviderConfig(ProviderKind.OPENAI, "m", api_key="k", base_url=server.url)
        settings = RunSettings(provider, chapter_timeout=300.0)
        spec = WorkerSpec(str(SAMPLE), str(out), settings, chapters=(1,))
        proc = subprocess.Popen(
            [sys.executable, "-m", "imaginize.workers.worker", "w1"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(spec.to_json())
            proc.stdin.close()
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.requests, "the worker sent no request"
            stopped_at = time.monotonic()
            for _ in range(signals):
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            took = time.monotonic() - stopped_at
            assert proc.stderr is not None
            stderr = proc.stderr.read()
        finally:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert took < 5, took
    one = ManifestStore(out).read().entry(1)  # type: ignore[union-attr]
    assert (one.status, one.owner, one.attempts) == (mf.Status.PENDING, None, 0)
