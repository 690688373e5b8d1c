"""Imported once by the forkserver, before it forks any worker: what every worker needs,
whatever its analyzer (`forkserver.py` adds the analyzer's own modules)."""

from __future__ import annotations

import atexit
import os
import sys
from multiprocessing import forkserver

import imaginize.workers.worker  # noqa: F401  (imported for its side effect: loaded modules)


def _imported_by_the_forkserver() -> bool:
    """True only during the forkserver's own preload (`forkserver.main` is on the stack), so
    that importing this module anywhere else changes nothing."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


# The forkserver ends when the process that started it does, and a normal interpreter exit
# would spend ~0.3 s tearing down the modules it loaded while still holding that process's
# stdout and stderr: anyone reading them through a pipe would wait for it. It has nothing to
# flush. (Workers forked from it leave through os._exit and never run this.)
if _imported_by_the_forkserver():
    atexit.register(os._exit, 0)
