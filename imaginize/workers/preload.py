"""Imported once by the forkserver, before it forks any worker: what every worker needs,
whatever its analyzer (`forkserver.py` adds the analyzer's own modules)."""

from __future__ import annotations

import imaginize.workers.worker  # noqa: F401  (imported for its side effect: loaded modules)
