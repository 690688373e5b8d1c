"""`--concurrent auto`: how many workers to keep busy, decided from what the server does.

A pure controller, fed with chapter latencies, 429s and the workers' memory, and asked for a
target worker count. Rules: start at min(cpus - 1, 4) (at least 1); the first few chapters set
the baseline latency; add a worker while recent latency stays under 1.2 x baseline (up to
`max_workers`); remove one when it rises above 2 x baseline or after a 429; never below 1;
drop to 1 when the workers' total memory passes `memory_limit`. After each change it waits for
fresh observations, so one slow chapter cannot swing it twice. A worker added must pay: when
chapters per second did not rise by GAIN_NEEDED with it (a local server answering one request
at a time makes each take twice as long), it is taken away again and the count stays below it
(`ceiling`, `queueing`).
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from dataclasses import dataclass, field

from imaginize.settings import DEFAULT_MAX_WORKERS

GROW_BELOW = 1.2
SHRINK_ABOVE = 2.0
BASELINE_SAMPLES = 3
WINDOW = 4
GAIN_NEEDED = 1.15
DEFAULT_MEMORY_LIMIT = 2 * 1024**3


def initial_workers(cpus: int | None = None, max_workers: int = DEFAULT_MAX_WORKERS) -> int:
    cpus = cpus if cpus is not None else (os.cpu_count() or 2)
    return max(1, min(cpus - 1, 4, max_workers))


@dataclass
class AutoScaler:
    target: int
    max_workers: int = DEFAULT_MAX_WORKERS
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    baseline: float | None = None
    _samples: list[float] = field(default_factory=list)
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    _since_change: int = 0
    # Above this many workers the server only queues (learned; None: not met yet).
    ceiling: int | None = None
    # The worker count before the last growth and its typical latency, to judge the growth.
    _before_growth: tuple[int, float] | None = None

    @property
    def queueing(self) -> bool:
        """Whether more workers were found to add nothing (the server serves them in turn)."""
        return self.ceiling is not None

    def chapter_done(self, seconds: float) -> int:
        """A chapter took `seconds`; returns the new target."""
        if self.baseline is None:
            self._samples.append(seconds)
            if len(self._samples) >= BASELINE_SAMPLES:
                self.baseline = statistics.median(self._samples)
            return self.target
        self._recent.append(seconds)
        self._since_change += 1
        if self._since_change < WINDOW:
            return self.target
        typical = statistics.median(self._recent)
        grown, self._before_growth = self._before_growth, None
        if grown is not None:
            workers, latency = grown
            if self.target / typical < GAIN_NEEDED * workers / latency:
                self.ceiling = workers
                self._change(workers - self.target)
                return self.target
        if typical > SHRINK_ABOVE * self.baseline:
            self._change(-1)
        elif typical < GROW_BELOW * self.baseline and self.target < (self.ceiling or 1 << 30):
            before = self.target
            self._change(+1)
            if self.target > before:
                self._before_growth = (before, typical)
        return self.target

    def rate_limited(self) -> int:
        """A 429 was seen anywhere on the key."""
        self._change(-1)
        return self.target

    def memory(self, total_rss: int) -> int:
        if total_rss > self.memory_limit and self.target > 1:
            self.target = 1
            self._reset()
        return self.target

    def _change(self, step: int) -> None:
        new = max(1, min(self.max_workers, self.target + step))
        if new != self.target:
            self.target = new
        self._reset()

    def _reset(self) -> None:
        self._recent.clear()
        self._since_change = 0


def process_rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 when unknown, e.g. not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
