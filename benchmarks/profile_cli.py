"""A cProfile of the CLI's own process during `imaginize BOOK --concurrent N` (the launcher:
imports, book parse, forkserver start, watching, guides). Workers are forkserver children and
are not profiled here; benchmarks/instrument.py times them.

    python -m benchmarks.profile_cli [--chapters 40] [--workers 5] [--delay 0.5] [--top 25]
                                     [--snapshot REV]

Same book, fake server and options as benchmarks/speedup.py. Prints the wall time and the
functions with the largest cumulative time, then the imports that took longest
(`-X importtime`, measured in a separate `python -c "import imaginize.cli"`).
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.source import describe, exported, pythonpath
from benchmarks.speedup import build_book, fake_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=40)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    args = parser.parse_args(argv)
    print(describe(args.snapshot))
    with (
        tempfile.TemporaryDirectory(prefix="imaginize-profile-") as tmp,
        exported(args.snapshot) as src,
    ):
        workdir = Path(tmp)
        path = pythonpath(src)
        book = build_book(workdir / "book.epub", args.chapters)
        env = {**os.environ, "PYTHONPATH": path, "XDG_CACHE_HOME": str(workdir / "cache")}
        with fake_server(workdir, args.delay, path) as (url, _log):
            profile = workdir / "cli.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "imaginize"]
            command += [str(book), "--base-url", url, "--concurrent", str(args.workers)]
            command += ["-o", str(workdir / "out"), "-q", "--batch-size", "1000"]
            command += ["--batch-delay", "0"]
            started = time.monotonic()
            subprocess.run(command, cwd=workdir, env=env, check=True, timeout=600)
            wall = time.monotonic() - started
        importtime = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import imaginize.cli"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        print(
            f"{args.chapters} chapters, --concurrent {args.workers}, reply latency "
            f"{args.delay:g} s: wall {wall:.2f} s ({os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})"
        )
        stats = pstats.Stats(str(profile))
        stats.sort_stats("cumulative").print_stats(args.top)
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((int(cumulative), name.rstrip()))
    print("slowest imports of `import imaginize.cli` (cumulative, s):")
    for micros, name in sorted(rows, reverse=True)[: args.top // 2]:
        print(f"  {micros / 1e6:6.3f} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
