"""Wall time of `imaginize BOOK --concurrent N` against a local server with fixed reply latency.

    python -m benchmarks.speedup [--quick] [--chapters 40] [--workers 1,2,3,5,8]
                                 [--delay 0.5] [--repeat 1] [--no-instrument]

Builds a book of --chapters short chapters (one request each) and a 1-chapter book with
tests/epubs.py in a temp folder, starts tests/fake_openai.py as its own process answering every
chat request with tests.replies:answer after --delay seconds (benchmarks/slow_replies.py), and
runs the real CLI (`python -m imaginize BOOK --base-url URL --concurrent N -o OUT -q`) for each N.

Figures printed:
- startup: wall time of the 1-chapter book at N=1 minus one reply latency, the fixed cost of
  a run (interpreters, imports, book parse, manifest, worker start, guides, exit);
- per N: wall time, speedup over N=1, ideal = ceil(chapters / N) * delay, efficiency =
  ideal / wall ("raw") and ideal / (wall - startup) ("excl. startup");
- coordination: each N is run once more through benchmarks/instrument.py, which times every
  manifest transaction (lock wait + read + write) in every process; printed as the sum over
  processes divided by wall time, and divided by N x wall time (per worker); "+pace" adds the
  request-pacing file's transactions (`Pacer._update`, two per request). Then a breakdown of
  where the rest of the wall time goes, and "work"/"eff": first claim -> last publish and
  ideal / work, the efficiency of the chapter phase alone.

--snapshot REV: the CLI runs (and their forkserver and workers) import imaginize/ as of REV
(benchmarks/source.py); the fake server, book builder and instrumentation come from the
working tree. Before the runs, an interpreter started as the CLI is checks where imaginize
comes from; each instrumented run's CLI and workers report the file they imported; the run
stops if any is not the snapshot's. The path is printed with the figures.

Each CLI run gets its own $XDG_CACHE_HOME (the request pace lives under it, per API key), so
no run shares pacing state with another or with the user's.

Everything runs in one invocation, plain and instrumented runs side by side, so compare rows
with each other: the machine may be shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.instrument import TIMINGS_ENV
from benchmarks.machine import LoadMonitor
from benchmarks.slow_replies import DELAY_ENV
from benchmarks.source import (
    REPO_ROOT,
    check,
    describe,
    environ,
    package_dir,
    python,
    pythonpath,
    workspace,
)
from tests.epubs import build_epub

SENTENCES = (
    "Wren lifted the tin lantern {n} above the wet grass of the orchard",
    "A thin blue light shivered in the glass while the wind worried the branches",
    "Old Maddock counted the lanternfruit twice and frowned at number {n}",
    "Somewhere past the far wall a fox barked and the hens went silent",
    "She pressed her palm against the bark and felt the tree hum like a kettle",
)


# --------------------------------------------------------------------------- fixtures


def chapter_body(number: int, paragraphs: int = 6) -> str:
    """About 250 words of distinct sentences: one request and one scene per chapter."""
    out = []
    for p in range(paragraphs):
        text = " ".join(s.format(n=f"{number}-{p}") + "." for s in SENTENCES)
        out.append(f"<p>{text}</p>")
    return "".join(out)


def build_book(path: Path, chapters: int) -> Path:
    return build_epub(
        path,
        [(f"Chapter {n}", chapter_body(n)) for n in range(1, chapters + 1)],
        title=f"Benchmark Book ({chapters} chapters)",
    )


@contextmanager
def fake_server(
    workdir: Path, delay: float, extra: Sequence[str] = ()
) -> Iterator[tuple[str, Path]]:
    """tests/fake_openai.py as its own process (`extra`: more of its options, e.g. --rpm);
    yields (base URL, request log path). A fixture, not measured: it and its responder
    (tests, benchmarks) come from the working tree, and it imports no imaginize."""
    script = workdir / "server-script.json"
    script.write_text(json.dumps({"responder": "benchmarks.slow_replies:answer"}))
    log = workdir / "requests.jsonl"
    env = {**os.environ, DELAY_ENV: str(delay), "PYTHONPATH": pythonpath(None)}
    env.pop(TIMINGS_ENV, None)
    command = [sys.executable, "-m", "tests.fake_openai", "--port", "0"]
    command += ["--script", str(script), "--log", str(log), *extra]
    with open(workdir / "server.stderr", "wb") as stderr:
        server = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the fake server did not start: {(workdir / 'server.stderr')}")
        yield url, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    chapters: int
    workers: int
    instrumented: bool
    wall: float
    launched: float  # time.monotonic() just before the CLI was started
    requests: int
    events: list[dict[str, Any]] = field(default_factory=list)


def run_cli(
    book: Path,
    chapters: int,
    workers: int,
    url: str,
    log: Path,
    workdir: Path,
    *,
    instrumented: bool,
    extra: Sequence[str] = (),
    source: Path | None,
) -> Run:
    """One run of the CLI on a fresh output folder, importing imaginize from `source` (an
    export, or None: the working tree); raises unless every chapter was done, and (when
    instrumented) stops unless the CLI and every worker imported imaginize from `source`."""
    tag = f"{book.stem}-n{workers}-{'inst' if instrumented else 'plain'}-{time.monotonic_ns()}"
    out_dir = workdir / tag
    timings = workdir / f"{tag}.timings.jsonl"
    # Its own cache folder, so the request pace (kept per API key under
    # $XDG_CACHE_HOME/imaginize/pace/) starts fresh and is shared with no other run.
    env = environ(source, XDG_CACHE_HOME=str(workdir / f"{tag}.cache"))
    env.pop(TIMINGS_ENV, None)
    entry = ["-m", "imaginize"]
    if instrumented:
        env[TIMINGS_ENV] = str(timings)
        entry = ["-m", "benchmarks.instrument", "cli"]
    command = [*python(), *entry, str(book), "--base-url", url]
    command += ["--concurrent", str(workers), "-o", str(out_dir), "-q", *extra]
    before = _count_lines(log)
    launched = time.monotonic()
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = process.communicate(timeout=600)
    except BaseException:
        _stop(process)
        raise
    wall = time.monotonic() - launched
    done = len(list((out_dir / "chapters").glob("[0-9][0-9][0-9].json")))
    if process.returncode != 0 or done != chapters:
        raise RuntimeError(
            f"{' '.join(command)}: exit {process.returncode}, {done}/{chapters} chapters:\n"
            + output.decode("utf-8", "replace")
        )
    events = []
    if instrumented:
        events = [json.loads(line) for line in timings.read_text().splitlines() if line]
        check_imports(events, source)
    return Run(chapters, workers, instrumented, wall, launched, _count_lines(log) - before, events)


def check_imports(events: list[dict[str, Any]], source: Path | None) -> None:
    """Every process of an instrumented run (the CLI, each worker) reports the imaginize it
    imported (benchmarks/instrument.py); stop unless each did, from `source`."""
    reported = {e["proc"]: e["imaginize"] for e in events if "imaginize" in e}
    for proc in sorted({e["proc"] for e in events}):
        check(reported.get(proc), package_dir(source), f"process {proc} of an instrumented run")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C the CLI (its launcher then stops its workers, which give their chapters back),
    and kill it if that takes too long."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Breakdown:
    """Where an instrumented run's wall time went (seconds, all on time.monotonic())."""

    wall: float
    txn_total: float  # time inside manifest transactions, summed over every process
    txn_wait: float  # of which waiting for the lock
    txn_count: int
    pace_total: float  # time inside request-pacing transactions, summed over every process
    cli_ready: float  # CLI launched -> first worker asked for (imports, parse, join)
    cli_imports: float  # of which interpreter start + imports
    cli_book: float  # of which read_book
    first_spawn: float  # Process.start() of the first worker (waits for the forkserver)
    worker_fork: float  # Process.start() called -> the child runs process_main (mean)
    worker_fork_max: float
    worker_boot: float  # Process.start() called -> the worker's first claim (mean)
    worker_boot_max: float
    worker_analyzer: float  # of which make_analyzer (mean; openai is preloaded)
    analyze: float  # mean Analyzer.analyze (HTTP round trip + reply checks), first ones excluded
    first_analyze: float  # mean of each worker's first Analyzer.analyze (lazy imports, connect)
    chapter_extra: float  # mean claim start -> publish end, minus analyze
    idle_sleep: float  # summed over workers
    work: float  # first claim (any worker) -> last chapter published
    tail_poll: float  # last chapter published -> last worker's loop ended
    tail_exit: float  # -> launcher saw the last worker gone
    tail_finish: float  # -> CLI exited (guides and interpreter exit)
    guides: float  # of which run._finish (load results, write the guides)
    teardown: float  # of which the CLI's main() returned -> the process ended

    @property
    def txn_share(self) -> float:
        return self.txn_total / self.wall


# Transactions that publish a chapter: a worker publishes and claims its next chapter in one
# (store.publish_and_claim, whose time goes to the chapter it publishes), or publishes alone.
PUBLISH_OPS = ("publish", "publish_and_claim")


def breakdown(run: Run) -> Breakdown:
    by_proc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in run.events:
        by_proc[event["proc"]].append(event)
    txns = [e for e in run.events if e["ev"] == "txn"]
    cli = by_proc["cli"]
    spawn_events = {e["worker"]: e for e in cli if e["ev"] == "spawn"}
    spawns = {worker: e["t"] for worker, e in spawn_events.items()}
    first_spawn = min(spawns.values())
    if not any(by_proc.get(worker) for worker in spawns):
        raise RuntimeError(
            "no timings from any worker: the forkserver did not import "
            "benchmarks.instrument_worker (it ignores preload modules that fail to import)"
        )
    boots, forks, analyzers, extras, analyses, firsts = [], [], [], [], [], []
    publishes: list[float] = []
    done_times: list[float] = []
    for worker, spawned in spawns.items():
        events = sorted(by_proc.get(worker, []), key=lambda e: e["t"])
        if not events:
            continue  # a replacement that never ran
        first = {}
        for event in events:
            first.setdefault(event["ev"] if event["ev"] != "txn" else event["op"], event)
        if "claim" in first:
            boots.append(first["claim"]["t"] - spawned)
        forks.append(first["start"]["t"] - spawned)
        analyzers.append(first["make_analyzer"]["dur"])
        claim_start: float | None = None
        analyzed = 0.0
        for event in events:
            if event["ev"] == "txn" and event["op"] == "claim":
                claim_start, analyzed = event["t"], 0.0
            elif event["ev"] == "analyze":
                analyzed += event["dur"]
                if event is first["analyze"]:
                    firsts.append(event["dur"])
                else:
                    analyses.append(event["dur"])
            elif event["ev"] == "txn" and event["op"] in PUBLISH_OPS and claim_start is not None:
                end = event["t"] + event["dur"]
                extras.append(end - claim_start - analyzed)
                publishes.append(end)
                claim_start = None
                if event["op"] == "publish_and_claim":  # claimed the next chapter (if any left)
                    claim_start, analyzed = end, 0.0
            elif event["ev"] == "worker_done":
                done_times.append(event["t"])
    reaped = max(e["t"] for e in cli if e["ev"] == "reaped")
    last_publish = max(publishes)
    first_claim = min(e["t"] for e in txns if e["op"] == "claim")
    return Breakdown(
        wall=run.wall,
        txn_total=sum(e["dur"] for e in txns),
        txn_wait=sum(e["wait"] for e in txns),
        txn_count=len(txns),
        pace_total=sum(e["dur"] for e in run.events if e["ev"] == "pace"),
        cli_ready=first_spawn - run.launched,
        cli_imports=next(e["t"] for e in cli if e["ev"] == "imported") - run.launched,
        cli_book=sum(e["dur"] for e in cli if e["ev"] == "read_book"),
        first_spawn=min(spawn_events.values(), key=lambda e: e["t"])["dur"],
        worker_fork=statistics.mean(forks),
        worker_fork_max=max(forks),
        worker_boot=statistics.mean(boots),
        worker_boot_max=max(boots),
        worker_analyzer=statistics.mean(analyzers),
        analyze=statistics.mean(analyses or firsts),
        first_analyze=statistics.mean(firsts),
        chapter_extra=statistics.mean(extras),
        idle_sleep=sum(e["dur"] for e in run.events if e["ev"] == "idle_sleep"),
        work=last_publish - first_claim,
        tail_poll=max(done_times) - last_publish,
        tail_exit=reaped - max(done_times),
        tail_finish=run.launched + run.wall - reaped,
        guides=sum(e["dur"] for e in cli if e["ev"] == "finish"),
        teardown=run.launched + run.wall - max(e["t"] for e in cli if e["ev"] == "exit"),
    )


# --------------------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    chapters: int,
    delay: float,
    startup_walls: list[float],
    plain: dict[int, list[Run]],
    inst: dict[int, Run],
) -> None:
    startup_wall = _median(startup_walls)
    startup = startup_wall - delay
    base = _median([r.wall for r in plain[1]]) if 1 in plain else None
    print(
        f"\n{chapters}-chapter book, reply latency {delay:g} s, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"startup: 1-chapter book at N=1 took {startup_wall:.2f} s "
        f"(runs: {', '.join(f'{w:.2f}' for w in startup_walls)}) -> fixed cost "
        f"{startup:.2f} s"
    )
    header = (
        f"{'N':>3} {'wall s':>7} {'speedup':>8} {'ideal s':>8} {'eff raw':>8} "
        f"{'eff -startup':>13} {'txn/wall':>9} {'txn/(N*wall)':>13} {'+pace/(N*wall)':>15} "
        f"{'requests':>9}"
    )
    print(header)
    print("-" * len(header))
    for workers, runs in plain.items():
        wall = _median([r.wall for r in runs])
        ideal = math.ceil(chapters / workers) * delay
        speedup = f"{base / wall:.2f}" if base else "-"
        shares = "", "", ""
        if workers in inst:
            b = breakdown(inst[workers])
            coordination = (b.txn_total + b.pace_total) / (workers * b.wall)
            shares = f"{b.txn_share:.1%}", f"{b.txn_share / workers:.1%}", f"{coordination:.1%}"
        print(
            f"{workers:>3} {wall:>7.2f} {speedup:>8} {ideal:>8.1f} {ideal / wall:>8.2f} "
            f"{ideal / (wall - startup):>13.2f} {shares[0]:>9} {shares[1]:>13} {shares[2]:>15} "
            f"{runs[0].requests:>9}"
        )
    if not inst:
        return
    print(
        "\nwhere the time goes (instrumented runs; seconds; txn = manifest transactions, "
        "pace = request-pacing file transactions, both summed over processes)"
    )
    header = (
        f"{'N':>3} {'wall':>6} {'txn':>6} {'lockwait':>8} {'#txn':>5} {'pace':>5} {'cli→spawn':>9} "
        f"{'(imports)':>9} {'(book)':>6} {'1st start':>9} {'fork':>5} {'(max)':>5} "
        f"{'boot':>5} {'(max)':>5} {'client':>6} {'1st req':>7} {'analyze':>7} {'+/chap':>6} "
        f"{'work':>6} {'eff':>5} {'idle':>6} {'poll':>5} {'exit':>5} {'finish':>6} "
        f"{'(guides)':>8} {'(teardown)':>10}"
    )
    print(header)
    print("-" * len(header))
    for workers, run in inst.items():
        b = breakdown(run)
        ideal = math.ceil(chapters / workers) * delay
        print(
            f"{workers:>3} {b.wall:>6.2f} {b.txn_total:>6.3f} {b.txn_wait:>8.3f} "
            f"{b.txn_count:>5} {b.pace_total:>5.2f} {b.cli_ready:>9.2f} {b.cli_imports:>9.2f} "
            f"{b.cli_book:>6.2f} {b.first_spawn:>9.2f} {b.worker_fork:>5.2f} "
            f"{b.worker_fork_max:>5.2f} {b.worker_boot:>5.2f} {b.worker_boot_max:>5.2f} "
            f"{b.worker_analyzer:>6.3f} {b.first_analyze:>7.3f} "
            f"{b.analyze:>7.3f} "
            f"{b.chapter_extra:>6.3f} {b.work:>6.2f} {ideal / b.work:>5.2f} "
            f"{b.idle_sleep:>6.2f} {b.tail_poll:>5.2f} "
            f"{b.tail_exit:>5.2f} {b.tail_finish:>6.2f} {b.guides:>8.2f} {b.teardown:>10.2f}"
        )
    print("\nmean time per transaction, ms (lock wait in brackets; count)")
    for workers, run in inst.items():
        print(f"{workers:>3} " + "  ".join(_per_op(run)))
    print(
        "cli→spawn: CLI launched -> first worker asked for (of which interpreter + imports, "
        "and read_book);\n1st start: the first Process.start() (waits for the forkserver's "
        "preload); fork: Process.start() called -> the child runs, mean and max;\nboot: "
        "Process.start() called -> the worker's first claim, mean and max (client = "
        "make_analyzer, of which);\n1st req: mean of each worker's first "
        "Analyzer.analyze; analyze: mean of the others (reply latency, client, pacing file); "
        "+/chap: mean claim-to-publish time beyond analyze (claim, stage, publish; a "
        "publish_and_claim counts to the chapter it publishes);\n"
        "work: first claim -> last publish, eff: ideal / work (efficiency without start and "
        "end);\n"
        "idle: time workers slept in the poll loop, summed; tail: last publish -> last worker "
        "loop ended (poll) -> launcher saw it gone (exit) -> CLI exited (finish: of which "
        "run._finish writing the guides, and the CLI process's end after main() returned)."
    )


def _per_op(run: Run) -> list[str]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in run.events:
        if event["ev"] == "txn":
            groups[event["op"]].append(event)
        elif event["ev"] == "pace":
            groups[f"pace.{event['op']}"].append(event)
    out = []
    for op, events in sorted(groups.items()):
        dur = 1000 * statistics.mean(e["dur"] for e in events)
        waits = [e["wait"] for e in events if "wait" in e]
        wait = f"{1000 * statistics.mean(waits):.1f}" if waits else "-"  # pacer: not timed
        out.append(f"{op} {dur:.1f} ({wait}; {len(events)})")
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 chapters, N = 1, 2, 5")
    parser.add_argument("--chapters", type=int, help="chapters in the book (default 40)")
    parser.add_argument("--workers", help="comma-separated N values (default 1,2,3,5,8)")
    parser.add_argument("--delay", type=float, default=0.5, help="reply latency, seconds")
    parser.add_argument("--repeat", type=int, default=1, help="plain runs per N (median)")
    parser.add_argument("--no-instrument", action="store_true", help="skip instrumented runs")
    parser.add_argument(
        "--snapshot",
        metavar="REV",
        help="measure imaginize/ as of this git revision (e.g. HEAD) instead of the working tree",
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="keep the CLI's default request pacing (by default it is opened up with "
        "--batch-size LARGE --batch-delay 0, so that only coordination is measured)",
    )
    args = parser.parse_args(argv)
    chapters = args.chapters or (12 if args.quick else 40)
    default_workers = "1,2,5" if args.quick else "1,2,3,5,8"
    counts = [int(n) for n in (args.workers or default_workers).split(",")]
    extra = [] if args.paced else ["--batch-size", str(max(1000, chapters)), "--batch-delay", "0"]
    plain: dict[int, list[Run]] = {n: [] for n in counts}
    inst: dict[int, Run] = {}
    startup_walls: list[float] = []
    source = describe(args.snapshot)
    print(source, file=sys.stderr, flush=True)
    with (
        LoadMonitor() as load,
        workspace(args.snapshot, "imaginize-speedup-", "an interpreter started as the CLI is") as (
            workdir,
            src,
            imported,
        ),
    ):
        book = build_book(workdir / "book.epub", chapters)
        single = build_book(workdir / "single.epub", 1)
        with fake_server(workdir, args.delay) as (url, log):

            def go(book: Path, count: int, workers: int, instrumented: bool = False) -> Run:
                run = run_cli(
                    book,
                    count,
                    workers,
                    url,
                    log,
                    workdir,
                    instrumented=instrumented,
                    extra=extra,
                    source=src,
                )
                label = f"{count} chapters, N={workers}{' instrumented' if instrumented else ''}"
                print(f"{label}: {run.wall:.2f} s", file=sys.stderr, flush=True)
                return run

            go(single, 1, 1)  # warm the page cache and the server
            for _ in range(args.repeat):
                startup_walls.append(go(single, 1, 1).wall)
                for workers in counts:
                    plain[workers].append(go(book, chapters, workers))
                    if not args.no_instrument and workers not in inst:
                        inst[workers] = go(book, chapters, workers, instrumented=True)
    print(f"\n{source}; request pacing {'as the CLI defaults' if args.paced else 'off'}")
    checked = "an interpreter started as the CLI is"
    if not args.no_instrument:
        checked += "; the CLI and every worker of the instrumented runs"
    print(f"imaginize imported from {imported} (checked: {checked})")
    report(chapters, args.delay, startup_walls, plain, inst)
    print(f"machine: {load.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
