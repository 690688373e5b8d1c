"""A cProfile of the CLI's own process during `imaginize BOOK --concurrent N` (the launcher:
imports, book parse, forkserver start, watching, guides). Workers are forkserver children and
are not profiled here; benchmarks/instrument.py times them.

    python -m benchmarks.profile_cli [--chapters 40] [--workers 5] [--delay 0.5] [--top 25]
                                     [--snapshot REV]

Same book, fake server and options as benchmarks/speedup.py. Prints the wall time and the
functions with the largest cumulative time, then the imports that took longest
(`-X importtime`, measured in a separate `python -c "import imaginize.cli.main"`).

--snapshot REV: both import imaginize/ as of REV (benchmarks/source.py); the profile's
imaginize files and the import run's `imaginize.cli.main.__file__` are checked to be the
snapshot's, and the script stops if they are not.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.source import REPO_ROOT, check, describe, environ, exported, python, verify
from benchmarks.speedup import build_book, fake_server

_IMPORT_CLI = "import imaginize.cli.main; print(imaginize.__file__)"


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
        book = build_book(workdir / "book.epub", args.chapters)
        env = environ(src, XDG_CACHE_HOME=str(workdir / "cache"))
        meant = verify(workdir, env, "an interpreter started as the profiled CLI is")
        with fake_server(workdir, args.delay) as (url, _log):
            profile = workdir / "cli.prof"
            command = [*python(), "-m", "cProfile", "-o", str(profile), "-m", "imaginize"]
            command += [str(book), "--base-url", url, "--concurrent", str(args.workers)]
            command += ["-o", str(workdir / "out"), "-q", "--batch-size", "1000"]
            command += ["--batch-delay", "0"]
            started = time.monotonic()
            subprocess.run(command, cwd=workdir, env=env, check=True, timeout=600)
            wall = time.monotonic() - started
        imports = subprocess.run(
            [*python(), "-X", "importtime", "-c", _IMPORT_CLI],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        check(imports.stdout.strip(), meant, "the -X importtime run")
        importtime = imports.stderr
        print(
            f"{args.chapters} chapters, --concurrent {args.workers}, reply latency "
            f"{args.delay:g} s: wall {wall:.2f} s ({os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})"
        )
        stats = pstats.Stats(str(profile))
        _check_profiled(stats, meant)
        print(f"imaginize imported from {meant} (checked: the profiled CLI's files, the imports)")
        stats.sort_stats("cumulative").print_stats(args.top)
    rows = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((int(cumulative), name.rstrip()))
    print("slowest imports of `import imaginize.cli.main` (cumulative, s):")
    for micros, name in sorted(rows, reverse=True)[: args.top // 2]:
        print(f"  {micros / 1e6:6.3f} {name}")
    return 0


def _check_profiled(stats: pstats.Stats, meant: Path) -> None:
    """The profiled CLI ran imaginize's code from `meant` (the snapshot's folder), none of
    it from the working tree's."""
    working = (REPO_ROOT / "imaginize").resolve()
    files = {Path(key[0]).resolve() for key in stats.stats}  # type: ignore[attr-defined]
    ran = [f for f in files if f.is_relative_to(meant)]
    if not ran:
        check(None, meant, "the profiled CLI")
    if meant != working:
        for file in files:
            if file.is_relative_to(working):
                check(str(file), meant, "the profiled CLI")


if __name__ == "__main__":
    raise SystemExit(main())
