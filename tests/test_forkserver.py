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


# Starts the forkserver with a Ctrl-C landing while it starts (the moment the preload's
# imports are protected from it); "interrupted" only if the Ctrl-C reached the program.
CTRL_C_WHILE_STARTING = """
import os, signal, sys
from multiprocessing import forkserver as mp_forkserver
from imaginize.workers import forkserver

start = mp_forkserver.ensure_running

def interrupted_start():
    os.kill(os.getpid(), signal.SIGINT)
    start()

mp_forkserver.ensure_running = interrupted_start
try:
    forkserver.warm_up(False)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_ctrl_c_while_the_forkserver_starts_is_not_lost() -> None:
    """The forkserver must start with Ctrl-C kept from it (it would die mid-import), but a
    Ctrl-C meant for the program in that moment must still reach the program: ignored, it
    was lost and the run went on to the end (exit 0 for a Ctrl-C at 0.8 s)."""
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_STARTING], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "interrupted", (done.returncode, done.stderr)
