"""The process that forks workers: a multiprocessing forkserver that has imported what
workers need (see `preload.py`) once, so a new worker is ready in milliseconds instead of
importing `openai` for a second or more. Falls back to spawn where there is no forkserver."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.context import BaseContext

# Modules the forkserver imports before forking; benchmarks append to this list in place.
PRELOAD = ["imaginize.preload"]


def context() -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        chosen = multiprocessing.get_context("forkserver")
        chosen.set_forkserver_preload(PRELOAD)
        return chosen
    return multiprocessing.get_context("spawn")


def warm_up() -> None:
    """Start the forkserver now (it imports in the background) so that it is ready by the
    time the book is parsed and the first worker is wanted."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    context()
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    # The server (and every worker it forks) starts with Ctrl-C ignored: it would otherwise
    # die with a traceback mid-import; the launcher decides how workers stop.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
