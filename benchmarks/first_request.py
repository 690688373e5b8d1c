"""Time to first request: from starting `imaginize SAMPLE --force --base-url URL -j N` to the
fake server receiving its first request, for two revisions run in turn (A B A B ...).

    python -m benchmarks.first_request --snapshot HEAD --vs HEAD~3 -n 10

Each run is stopped (two Ctrl-Cs) once its first request has arrived. The fake server's
request log stamps each request with the system's monotonic clock on arrival, the clock
this process reads before starting the CLI. Each run gets its own XDG_CACHE_HOME (pace).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks.source import REPO_ROOT, exported, pythonpath

SAMPLE = REPO_ROOT / "samples" / "the-lanternfruit-orchard.epub"
ENTRY = "import sys; from imaginize.cli.entry import main; sys.exit(main())"


def _records(log: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def first_request(src: Path | None, url: str, log: Path, work: Path, workers: int) -> float:
    before = len(_records(log))
    env = {**os.environ, "PYTHONPATH": pythonpath(src), "XDG_CACHE_HOME": str(work / "cache")}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY"):
        env.pop(name, None)
    command = [sys.executable, "-P", "-c", ENTRY, str(SAMPLE), "--force", "-o", str(work)]
    command += ["--base-url", url, "--api-key", "test", "--model", "fake", "-j", str(workers)]
    started = time.monotonic()
    run = subprocess.Popen(
        [*command, "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.monotonic() - started < 60:
            found = _records(log)
            if len(found) > before:
                return found[before]["t_mono"] - started
            time.sleep(0.005)
        raise RuntimeError("no request within 60 s")
    finally:
        run.send_signal(signal.SIGINT)
        time.sleep(0.3)
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=20)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="A: this revision (default: tree)")
    parser.add_argument("--vs", metavar="REV", required=True, help="B: this revision")
    parser.add_argument("-n", type=int, default=10, help="runs of each")
    parser.add_argument("-j", type=int, default=1, help="workers")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="first-request-")))
        trees = {"A": stack.enter_context(exported(args.snapshot))}
        trees["B"] = stack.enter_context(exported(args.vs))
        script = tmp / "script.json"
        script.write_text(json.dumps({"responder": "benchmarks.slow_replies:answer"}))
        log = tmp / "requests.jsonl"
        env = {**os.environ, "IMAGINIZE_BENCH_DELAY": "5", "PYTHONPATH": pythonpath(None)}
        command = [sys.executable, "-m", "tests.fake_openai", "--port", "0"]
        server = subprocess.Popen(
            [*command, "--script", str(script), "--log", str(log)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            seconds: dict[str, list[float]] = {"A": [], "B": []}
            for i in range(args.n):
                for name, src in trees.items():
                    work = tmp / f"{name}{i}"
                    seconds[name].append(first_request(src, url, log, work, args.j))
                    time.sleep(0.5)
        finally:
            server.terminate()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
    for name, rev in (("A", args.snapshot or "working tree"), ("B", args.vs)):
        got = sorted(seconds[name])
        print(f"{name} {rev}: median {statistics.median(got):.2f} s ({got[0]:.2f}-{got[-1]:.2f})")
    ratios = sorted(a / b for a, b in zip(seconds["A"], seconds["B"], strict=True))
    print(f"A/B median {statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})")
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
