"""What the machine was doing while a benchmark ran: core count and load average."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Self


class LoadMonitor:
    """Samples the 1-minute load average every `interval` seconds in a background thread.

    with LoadMonitor() as load:
        ...
    print(load.describe())  # "2 CPUs, load average 1.2-3.4 (mean 2.1) over 95 s"
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._started = 0.0
        self._ended = 0.0

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])
        self._ended = time.monotonic()

    def describe(self) -> str:
        cpus = f"{os.cpu_count()} CPUs"
        if not self.samples:
            return cpus
        low, high = min(self.samples), max(self.samples)
        mean = sum(self.samples) / len(self.samples)
        took = (self._ended or time.monotonic()) - self._started
        return (
            f"{cpus}, 1-min load average {low:.1f}-{high:.1f} (mean {mean:.1f}) over {took:.0f} s"
        )
