"""A Ctrl-C at any moment of start-up ends quietly: no traceback, status 130."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.replies import answer
from tests.test_cli import SAMPLE, start_imaginize


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.8, 1.3, 2.0])
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
