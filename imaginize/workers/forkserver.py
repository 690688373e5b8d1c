"""The process that forks workers: a multiprocessing forkserver that has imported what
workers need (see `preload.py`) once, so a new worker is ready in milliseconds instead of
importing for a second or more. Falls back to spawn where there is no forkserver.

What it preloads depends on the analyzer: `openai` alone takes about a second to import, which
a run of the offline analyzer never needs. The first `context()` or `warm_up()` call of a
process starts the server and so decides; a worker that finds a module missing imports it
itself (slower, never wrong).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.context import BaseContext

# Modules every worker needs, imported first; benchmarks append to this list in place.
PRELOAD = ["imaginize.workers.preload"]
# What each analyzer adds.
OFFLINE_PRELOAD = ["imaginize.analysis.offline.analyzer"]
SERVER_PRELOAD = ["imaginize.workers.preload_openai"]


def context(server: bool = True) -> BaseContext:
    """The start method for workers. `server`: whether they will call a server (preload
    `openai`) or run the offline analyzer."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        chosen = multiprocessing.get_context("forkserver")
        extra = SERVER_PRELOAD if server else OFFLINE_PRELOAD
        # The shared list first: instrumentation appended there patches the worker module.
        chosen.set_forkserver_preload([PRELOAD[0], *extra, *PRELOAD[1:]])
        return chosen
    return multiprocessing.get_context("spawn")


def warm_up(server: bool = True) -> None:
    """Start the forkserver now (it imports in the background) so that it is ready by the
    time the book is parsed and the first worker is wanted."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    context(server)
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    # The server (and every worker it forks) starts with Ctrl-C blocked: it would otherwise
    # die with a traceback mid-import; the launcher decides how workers stop. Blocked, not
    # ignored: a Ctrl-C meanwhile stays pending in this process and arrives once unblocked.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
