"""Pacing accuracy: N imaginize processes sharing one --rpm limit against a server enforcing it.

    python -m benchmarks.pacing [--quick] [--rpm 60] [--window 60] [--requests 70]
                                [--procs 1,3,6] [--kinds concurrent,terminals]
                                [--delay 0.5] [--snapshot REV]

Each run gets a fresh tests/fake_openai.py process started with `--rpm R --rate-window W`
(it accepts at most R * W / 60 POSTs in any sliding W-second window and answers 429 with
Retry-After beyond that; 429s do not count against the window), a book of --requests short
chapters (one chat request each, answered after --delay seconds with a valid reply), and a
fresh $XDG_CACHE_HOME shared by the run's processes, so they share one request pace (kept per
API key and server under $XDG_CACHE_HOME/imaginize/pace/) and no run inherits another's. The
processes are real CLIs:

    python -m imaginize BOOK --base-url URL -o OUT -q --rpm R --batch-size 1000 --batch-delay 0
        [--concurrent N]

- "concurrent": one CLI with --concurrent N;
- "terminals": N CLIs with --concurrent 1 each, started together on the same book and output
  folder (N terminals); N = 1 is the same run as "concurrent" and is run once.

Measured at the server, from its request log (receipt times, time.monotonic()): the accepted
requests' aggregate rate over the steady part of the run (the first and last 10 % of the
accepted requests left out: start-up and the last chapters), as requests per minute and as a
share of the limit; the number of 429s; the shortest gap between two accepted requests; and
for every 429, how far back the request R*W/60 places earlier was. Target: rate within
[0.9, 1.0] of the limit and no 429.

The server's window is 60 s by default (--window), so a run needs more than R requests for
the window to fill at all: the default 70 requests at 60 rpm take ~70 s a run, five runs
~6 minutes. --quick: 30 requests against a 15 s window (15 requests per 15 s: the same
1 request/s, judged over a shorter window, which is stricter about bunching), and three runs
(N=1, N=3 concurrent, N=6 terminals), ~2 minutes.

--snapshot REV: the CLIs import imaginize/ as of REV (benchmarks/source.py); before each run an
interpreter started as they are checks that, and the benchmark stops if not.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import LoadMonitor
from benchmarks.source import describe, environ, python, verify, workspace
from benchmarks.speedup import _stop, build_book, fake_server
from tests.fake_openai import read_log

TRIM = 0.10  # share of accepted requests left out at each end of a run ("steady part")


@dataclass(frozen=True)
class Setup:
    procs: int
    kind: str  # "concurrent" (one CLI, --concurrent N) or "terminals" (N CLIs)

    @property
    def label(self) -> str:
        if self.procs == 1:
            return "1 CLI, --concurrent 1"
        if self.kind == "concurrent":
            return f"1 CLI, --concurrent {self.procs}"
        return f"{self.procs} CLIs, --concurrent 1"


@dataclass(frozen=True)
class Result:
    setup: Setup
    wall: float
    chapters_done: int
    exit_codes: list[int]
    accepted: list[float]  # receipt times (time.monotonic()) of accepted chat requests
    limited: list[float]  # receipt times of 429 answers
    load: float  # 1-minute load average at the end of the run

    def steady(self) -> list[float]:
        times = self.accepted
        cut = max(1, math.floor(TRIM * len(times)))
        return times[cut : len(times) - cut]

    def rate(self, times: list[float]) -> float:
        """Requests per minute between the first and the last of `times`."""
        if len(times) < 2 or times[-1] <= times[0]:
            return math.nan
        return 60.0 * (len(times) - 1) / (times[-1] - times[0])

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.accepted, self.accepted[1:], strict=False)]


def run_setup(
    setup: Setup,
    book: Path,
    chapters: int,
    root: Path,
    args: argparse.Namespace,
    source: Path | None,
) -> Result:
    workdir = root / f"n{setup.procs}-{setup.kind}"
    workdir.mkdir()
    per_window = max(1, round(args.rpm * args.window / 60.0))
    server_args = ["--rpm", str(per_window), "--rate-window", str(args.window)]
    out_dir = workdir / "out"
    env = environ(source, XDG_CACHE_HOME=str(workdir / "cache"))
    # Where the CLIs will import imaginize from (--snapshot: the export), checked by an
    # interpreter started as they are; stops the benchmark if it is not the one meant.
    verify(workdir, env, f"an interpreter started as the CLIs of '{setup.label}' are")
    clis = 1 if setup.kind == "concurrent" else setup.procs
    each = setup.procs if setup.kind == "concurrent" else 1
    with fake_server(workdir, args.delay, server_args) as (url, log):
        command = [*python(), "-m", "imaginize", str(book), "--base-url", url]
        command += ["-o", str(out_dir), "-q", "--concurrent", str(each), "--rpm", f"{args.rpm:g}"]
        command += ["--batch-size", "1000", "--batch-delay", "0"]
        processes: list[subprocess.Popen[bytes]] = []
        outputs = []
        started = time.monotonic()
        try:
            for index in range(clis):
                output = open(workdir / f"cli-{index + 1}.out", "wb")  # noqa: SIM115
                outputs.append(output)
                processes.append(
                    subprocess.Popen(
                        command, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT
                    )
                )
            budget = 120 + 3 * chapters * 60.0 / args.rpm
            for process in processes:
                process.wait(timeout=max(1.0, budget - (time.monotonic() - started)))
        finally:
            for process in processes:
                _stop(process)
            for output in outputs:
                output.close()
        wall = time.monotonic() - started
        records = read_log(log)
    chats = sorted(
        (r for r in records if r["endpoint"] == "chat" and r["method"] == "POST"),
        key=lambda r: r["t_mono"],
    )
    done = len(list((out_dir / "chapters").glob("[0-9][0-9][0-9].json")))
    codes = [p.returncode for p in processes]
    for index, code in enumerate(codes):
        if code != 0:
            text = (workdir / f"cli-{index + 1}.out").read_text(errors="replace")
            print(f"{setup.label}: CLI {index + 1} exited {code}:\n{text}", file=sys.stderr)
    return Result(
        setup,
        wall,
        done,
        codes,
        [r["t_mono"] for r in chats if r["status"] == 200],
        [r["t_mono"] for r in chats if r["status"] == 429],
        os.getloadavg()[0],
    )


def report(results: list[Result], args: argparse.Namespace, chapters: int) -> None:
    per_window = max(1, round(args.rpm * args.window / 60.0))
    print(
        f"\nlimit {args.rpm:g} rpm (client --rpm {args.rpm:g}; server: {per_window} requests "
        f"per {args.window:g} s sliding window), {chapters} chapters = 1 request each, reply "
        f"latency {args.delay:g} s"
    )
    header = (
        f"{'processes':<24} {'wall s':>7} {'done':>5} {'exit':>6} {'200s':>5} {'429s':>5} "
        f"{'rpm all':>8} {'rpm steady':>11} {'of limit':>9} {'1st gap':>8} {'min gap (#)':>12} "
        f"{'median':>7} {'load':>5} "
        f"{'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        steady = r.rate(r.steady())
        share = steady / args.rpm
        met = 0.9 <= share <= 1.0 and not r.limited
        codes = ",".join(str(c) for c in r.exit_codes)
        gaps = r.gaps() or [math.nan]
        smallest = min(range(len(gaps)), key=gaps.__getitem__)
        least = f"{gaps[smallest]:.3f} ({smallest + 1})"
        print(
            f"{r.setup.label:<24} {r.wall:>7.1f} {r.chapters_done:>5} {codes:>6} "
            f"{len(r.accepted):>5} {len(r.limited):>5} {r.rate(r.accepted):>8.2f} "
            f"{steady:>11.2f} {share:>9.3f} {gaps[0]:>8.3f} {least:>12} "
            f"{statistics.median(gaps):>7.3f} {r.load:>5.1f} "
            f"{'met' if met else 'MISSED':>7}"
        )
    print(
        f"rpm all: accepted requests per minute, first to last; rpm steady: the same without "
        f"the first and last {TRIM:.0%} of them;\nof limit: rpm steady / limit (target "
        f"0.9-1.0, and no 429); gaps between accepted requests as the server received them, "
        f"s: the first (requests 1-2), the shortest (n: between requests n and n+1), the "
        f"median (the limit's interval is {60 / args.rpm:.3f} s; the pacer may space "
        "reservations wider, by its margin imaginize.pacing.pace.RPM_MARGIN);\nload: 1-minute load "
        "average at the end of the run."
    )
    for r in results:
        for t in r.limited:
            earlier = [a for a in r.accepted if a < t]
            previous = t - earlier[-1] if earlier else math.nan
            window_start = t - earlier[-per_window] if len(earlier) >= per_window else math.nan
            first = r.accepted[0] if r.accepted else t
            print(
                f"  429 in '{r.setup.label}' at {t - first:.2f} s: {previous:.3f} s after the "
                f"previous accepted request; the {per_window}th accepted before it came "
                f"{window_start:.3f} s earlier (window {args.window:g} s)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2 minutes: see the docstring")
    parser.add_argument("--rpm", type=float, default=60.0, help="the limit, requests/minute")
    parser.add_argument("--window", type=float, help="server's window, s (default 60; quick 15)")
    parser.add_argument("--requests", type=int, help="chapters = requests (default 70; quick 30)")
    parser.add_argument("--procs", help="comma-separated N (default 1,3,6)")
    parser.add_argument(
        "--kinds",
        default="concurrent,terminals",
        help="concurrent (one CLI, --concurrent N) and/or terminals (N CLIs)",
    )
    parser.add_argument("--delay", type=float, default=0.5, help="reply latency, seconds")
    parser.add_argument(
        "--snapshot",
        metavar="REV",
        help="measure imaginize/ as of this git revision (e.g. HEAD) instead of the working tree",
    )
    args = parser.parse_args(argv)
    args.window = args.window or (15.0 if args.quick else 60.0)
    chapters = args.requests or (30 if args.quick else 70)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not set(kinds) <= {"concurrent", "terminals"}:
        parser.error("--kinds: concurrent and/or terminals")
    if args.quick and not args.procs:
        setups = [Setup(1, "concurrent"), Setup(3, "concurrent"), Setup(6, "terminals")]
    else:
        counts = [int(n) for n in (args.procs or "1,3,6").split(",")]
        setups = []
        for n in counts:
            for kind in kinds:
                setup = Setup(n, "concurrent" if n == 1 else kind)
                if setup not in setups:
                    setups.append(setup)
    source = describe(args.snapshot)
    print(source, file=sys.stderr, flush=True)
    results = []
    with (
        LoadMonitor() as load,
        workspace(args.snapshot, "imaginize-pacing-", "an interpreter started as the CLIs are") as (
            root,
            src,
            imported,
        ),
    ):
        book = build_book(root / "book.epub", chapters)
        for setup in setups:
            result = run_setup(setup, book, chapters, root, args, src)
            print(
                f"{setup.label}: {result.wall:.1f} s, {len(result.accepted)} accepted, "
                f"{len(result.limited)} x 429",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    print(f"\n{source}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"imaginize imported from {imported} (checked: an interpreter started as the CLIs are)")
    report(results, args, chapters)
    print(f"machine: {load.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
