"""What one reservation costs: `slot()` taken and given back, with the file pace and with the
pace in Redis (fakeredis's TCP server, and a real `redis-server` when one is on PATH).

Limits that never make a request wait (no rpm, no batches, no in-flight cap), so the figure is
the backend's own cost per request: a lock, a read and a write of the pace file, or a Lua
script and a ZREM over a loopback connection. Prints microseconds per request, median of
`--rounds` rounds of `--requests` requests in one process, and with `--processes N` the same
from N processes at once (their requests per second together).

    python -m benchmarks.pace_cost [--requests 2000] [--rounds 3] [--processes 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from imaginize.pacing import open_pacer
from imaginize.pacing.pace import Limits, SharedPace, pace_digest
from tests.local_servers import fakeredis_tcp, redis_server

FREE = Limits(batch_size=10**9, batch_delay=0.0)


def _pacer(folder: str, url: str | None) -> SharedPace:
    return open_pacer(
        Path(folder), FREE, redis_url=url, digest=pace_digest("bench", folder), check=True
    )


def _timed(folder: str, url: str | None, requests: int) -> float:
    pacer = _pacer(folder, url)
    started = time.perf_counter()
    for _ in range(requests):
        with pacer.slot(tokens=100):
            pass
    return time.perf_counter() - started


def _child(args: tuple[str, str | None, int]) -> float:
    return _timed(*args)


def measure(name: str, url: str | None, requests: int, rounds: int, processes: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        one = [_timed(folder, url, requests) / requests * 1e6 for _ in range(rounds)]
        line = f"{name:<22} {statistics.median(one):8.0f} µs/request (1 process)"
        if processes > 1:
            context = multiprocessing.get_context("spawn")
            with context.Pool(processes) as pool:
                started = time.perf_counter()
                pool.map(_child, [(folder, url, requests)] * processes)
                wall = time.perf_counter() - started
            line += f"   {processes * requests / wall:8.0f} requests/s ({processes} processes)"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4)
    options = parser.parse_args()
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")

    def run(name: str, url: str | None) -> None:
        measure(name, url, options.requests, options.rounds, options.processes)

    run("file pace", None)
    try:
        with fakeredis_tcp() as url:
            run("fakeredis (TCP)", url)
    except ImportError:
        print("fakeredis (TCP)        not installed (pip install 'imaginize[test]')")
    binary = shutil.which("redis-server")
    if binary:
        with redis_server(binary) as url:
            run("redis-server", url)
    else:
        print("redis-server           not on PATH (apt install redis-server)")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
