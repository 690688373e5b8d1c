"""Imported once by the forkserver, before it forks any worker: what every worker needs,
whatever its analyzer (`forkserver.py` adds the analyzer's own modules)."""

from __future__ import annotations

import atexit
import os

import imaginize.worker  # noqa: F401  (imported for its side effect: loaded modules)

# The forkserver ends when the process that started it does, and a normal interpreter exit
# would spend ~0.3 s tearing down the modules it loaded while still holding that process's
# stdout and stderr: anyone reading them through a pipe would wait for it. It has nothing to
# flush. (Workers forked from it leave through os._exit and never run this.)
atexit.register(os._exit, 0)
