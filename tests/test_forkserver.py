"""What the worker forkserver preloads, and that preloading changes nothing elsewhere."""

from __future__ import annotations

import subprocess
import sys
from multiprocessing.context import ForkServerContext

import pytest

from imaginize.workers import forkserver


def test_the_preload_follows_the_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(
        ForkServerContext, "set_forkserver_preload", lambda self, names: asked.append(names)
    )
    forkserver.context(False)
    forkserver.context(True)
    offline, server = asked
    assert offline[0] == server[0] == "imaginize.workers.preload"  # first: the worker's own modules
    assert (
        "imaginize.workers.preload_openai" in server
        and "imaginize.workers.preload_openai" not in offline
    )
    assert "imaginize.analysis.offline.analyzer" in offline


@pytest.mark.slow
def test_importing_the_preload_outside_the_forkserver_keeps_the_exit_status() -> None:
    # Importing the preload loads modules and nothing else: an exit hook it once installed
    # (os._exit(0), for the forkserver) turned every exit status into 0.
    code = "import imaginize.workers.preload, sys; sys.exit(3)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 3
