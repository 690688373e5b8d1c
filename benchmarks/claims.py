"""Claim + complete latency and throughput of the manifest under 1, 2, 4 and 8 processes.

Each process (multiprocessing, spawn) loops: `ManifestStore.claim` -> stage a tiny result
file with `write_json_atomic` (as a worker does) -> `ManifestStore.publish`, until nothing is
left to claim. The manifest always holds 400 chapters (so every transaction reads and writes
a full-size manifest); --quick lets the processes claim only the first 100 of them.

    python -m benchmarks.claims [--quick] [--chapters 400] [--ops 400] [--procs 1,2,4,8]
                                [--snapshot REV]

With --snapshot the script runs itself again with the exported revision on PYTHONPATH (see
benchmarks/source.py); that process and every claim process report which imaginize they
imported, and the run stops if it is not the snapshot's.

Prints one row per process count: ops, wall time, ops/s, and the latency of one claim +
stage + publish cycle (median, p99), with the claim and publish parts and the time spent
waiting for the lock. All levels run in one invocation, so compare the rows with each other
rather than with figures from another day: the machine may be shared.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import imaginize
from benchmarks.machine import LoadMonitor
from benchmarks.source import REPO_ROOT, check, describe, environ, expected, exported, python
from imaginize.coordination.atomic import write_json_atomic
from imaginize.coordination.store import ManifestStore
from imaginize.guides.results import CHAPTERS_DIR

SOURCE_ENV = "IMAGINIZE_BENCH_SOURCE"
LEASE = 600.0
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Sample:
    """One claim -> stage -> publish cycle, in seconds."""

    total: float
    claim: float
    publish: float
    lock_wait: float


@dataclass
class LockLog:
    """This process's critical sections: how long each waited for the lock and held it."""

    waits: list[float] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    hold_cpu: list[float] = field(default_factory=list)

    def install(self) -> None:
        """Time every `ManifestStore.locked` section of this process (children only)."""
        original = ManifestStore.locked

        @contextmanager
        def locked(store: ManifestStore) -> Iterator[None]:
            asked = time.perf_counter()
            with original(store):
                acquired, cpu = time.perf_counter(), time.process_time()
                yield
            self.holds.append(time.perf_counter() - acquired)
            self.hold_cpu.append(time.process_time() - cpu)
            self.waits.append(acquired - asked)

        ManifestStore.locked = locked  # type: ignore[method-assign]


def _worker(
    out_dir: str,
    worker_id: str,
    wanted: tuple[int, ...],
    go: Event,
    ready: Connection,
    results: Connection,
) -> None:
    """One contending process (spawned): waits for `go`, then claims until none is left."""
    log = LockLog()
    log.install()
    waits = log.waits
    store = ManifestStore(Path(out_dir))
    owner = f"bench:{os.getpid()}:{worker_id}"
    chapters = Path(out_dir) / CHAPTERS_DIR
    samples: list[Sample] = []
    ready.send(True)
    ready.close()
    go.wait()
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        waited = len(waits)
        claim = store.claim(owner, lease=LEASE, max_attempts=MAX_ATTEMPTS, wanted=wanted)
        t1 = time.perf_counter()
        if claim is None:
            break
        staged = chapters / f".{claim.number:03d}.{claim.token}.json"
        write_json_atomic(staged, {"chapter": claim.number, "scenes": [], "elements": []})
        t2 = time.perf_counter()
        if not store.publish(claim.number, claim.token, staged, 0):
            raise RuntimeError(f"chapter {claim.number}: claim {claim.token} lost")
        t3 = time.perf_counter()
        samples.append(Sample(t3 - t0, t1 - t0, t3 - t2, sum(waits[waited:])))
    finished = time.perf_counter()
    results.send((started, finished, samples, log.holds, log.hold_cpu, imaginize.__file__))
    results.close()


@dataclass(frozen=True)
class Level:
    procs: int
    ops: int
    wall: float
    samples: list[Sample]
    holds: list[float]
    hold_cpu: list[float]

    @property
    def throughput(self) -> float:
        return self.ops / self.wall


def _new_manifest(out_dir: Path, chapters: int) -> None:
    ManifestStore(out_dir).join(
        book_path=str(out_dir / "bench.epub"),
        sha256="0" * 64,
        title="Benchmark",
        chapters=[(n, f"Chapter {n}") for n in range(1, chapters + 1)],
    )


def run_level(procs: int, chapters: int, ops: int, root: Path) -> Level:
    out_dir = root / f"procs-{procs}"
    _new_manifest(out_dir, chapters)
    wanted = tuple(range(1, ops + 1))
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    children: list[mp.process.BaseProcess] = []
    pipes: list[Connection] = []
    try:
        readies = []
        for index in range(procs):
            ready_recv, ready_send = ctx.Pipe(duplex=False)
            result_recv, result_send = ctx.Pipe(duplex=False)
            child = ctx.Process(
                target=_worker,
                args=(str(out_dir), f"w{index + 1}", wanted, go, ready_send, result_send),
                daemon=True,
            )
            child.start()
            ready_send.close()
            result_send.close()
            children.append(child)
            readies.append(ready_recv)
            pipes.append(result_recv)
        for ready in readies:  # every process has imported and built its store
            ready.recv()
            ready.close()
        go.set()
        reports = [pipe.recv() for pipe in pipes]
        for child in children:
            child.join(timeout=30)
            if child.exitcode != 0:
                raise RuntimeError(f"a claim process exited with {child.exitcode}")
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
        for pipe in pipes:
            pipe.close()
    for report in reports:
        check(report[5], expected(), f"a claim process ({procs} procs)")
    start = min(r[0] for r in reports)
    end = max(r[1] for r in reports)
    samples = [s for r in reports for s in r[2]]
    holds = [h for r in reports for h in r[3]]
    hold_cpu = [h for r in reports for h in r[4]]
    if len(samples) != ops:
        raise RuntimeError(f"{len(samples)} chapters published, expected {ops}")
    return Level(procs, len(samples), end - start, samples, holds, hold_cpu)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if q == 0.5:
        return 1000 * statistics.median(ordered)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return 1000 * ordered[index]


def print_table(levels: list[Level], chapters: int) -> None:
    print(
        f"claim -> stage -> publish on a {chapters}-chapter manifest "
        f"({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')})"
    )
    header = (
        f"{'procs':>5} {'ops':>5} {'wall s':>7} {'ops/s':>7} {'median ms':>10} "
        f"{'p99 ms':>8} {'claim ms':>9} {'publish ms':>11} {'hold ms':>8} {'cpu ms':>7} "
        f"{'lock busy':>10} "
        f"{'lock wait':>10}"
    )
    print(header)
    print("-" * len(header))
    for level in levels:
        totals = [s.total for s in level.samples]
        wait_share = sum(s.lock_wait for s in level.samples) / sum(totals)
        print(
            f"{level.procs:>5} {level.ops:>5} {level.wall:>7.2f} {level.throughput:>7.1f} "
            f"{_ms(totals, 0.5):>10.1f} {_ms(totals, 0.99):>8.1f} "
            f"{_ms([s.claim for s in level.samples], 0.5):>9.1f} "
            f"{_ms([s.publish for s in level.samples], 0.5):>11.1f} "
            f"{_ms(level.holds, 0.5):>8.1f} {_ms(level.hold_cpu, 0.5):>7.1f} "
            f"{sum(level.holds) / level.wall:>10.0%} "
            f"{wait_share:>10.0%}"
        )
    print(
        "median/p99: one claim+stage+publish cycle; claim/publish: medians of the two "
        "transactions (wait included);\nhold: median time one transaction holds the lock "
        "(cpu: the holder's CPU time in it); "
        "lock busy: share of wall time the lock is held;\nlock wait: share of cycle time "
        "spent waiting for the lock."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 claims per level")
    parser.add_argument("--chapters", type=int, default=400, help="chapters in the manifest")
    parser.add_argument("--ops", type=int, help="claims per level (default: all chapters)")
    parser.add_argument("--procs", default="1,2,4,8", help="comma-separated process counts")
    parser.add_argument(
        "--snapshot",
        metavar="REV",
        help="measure imaginize/ as of this git revision (e.g. HEAD) instead of the working tree",
    )
    args = parser.parse_args(argv)
    ops = args.ops or (min(100, args.chapters) if args.quick else args.chapters)
    if not 0 < ops <= args.chapters:
        parser.error("--ops must be between 1 and --chapters")
    if args.snapshot:
        # Run this script again with the exported revision first on the path (and, -P, not
        # the working folder ahead of it: from the repo that was the working tree's imaginize).
        with exported(args.snapshot) as src:
            env = environ(src, **{SOURCE_ENV: describe(args.snapshot)})
            again = ["--chapters", str(args.chapters), "--ops", str(ops), "--procs", args.procs]
            command = [*python(), "-m", "benchmarks.claims", *again]
            return subprocess.run(command, env=env, cwd=REPO_ROOT).returncode
    print(os.environ.get(SOURCE_ENV) or describe(None))
    found = check(imaginize.__file__, expected(), "benchmarks.claims")
    counts = [int(n) for n in args.procs.split(",")]
    levels = []
    with LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="imaginize-claims-") as root:
        for procs in counts:
            levels.append(run_level(procs, args.chapters, ops, Path(root)))
    print_table(levels, args.chapters)
    print(f"imaginize imported from {found} (this process and every claim process checked)")
    print(f"machine: {load.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
