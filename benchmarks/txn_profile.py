"""Where one chapter's coordination time goes: a cProfile of what a worker does around one
request (claim, pace, stage, publish), in one process (no contention: the floor per chapter).

    python -m benchmarks.txn_profile [--chapters 40] [--cycles 200] [--snapshot REV]

Builds a manifest of --chapters chapters in a temp folder, then repeats --cycles times what a
worker does around one request: `Pacer.slot()` (one `_update` to reserve, one to finish),
`write_json_atomic` of a staged result of realistic size, and `ManifestStore.publish_and_claim`,
which publishes the chapter and claims the next in one transaction. A chapter not claimed that
way (a book's first) is claimed as the worker does, by `worker._claim_next`: a look at the
manifest without the lock, then `ManifestStore.claim`; and the look that finds the book settled
after its last chapter counts too. A revision without `publish_and_claim` (--snapshot) is
measured doing what its worker did: `_claim_next` before every chapter, then `publish`.
Prints milliseconds per cycle spent in (cumulative, i.e. including what they call) the
functions that make up a transaction, and the wall time per cycle. Since the journal
(coordination/journal.py) a transaction appends a line and reads only the lines added since;
`benchmarks.manifest_scale` measures how that cost holds as the book grows.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.source import describe, exported, pythonpath

SOURCE_ENV = "IMAGINIZE_BENCH_SOURCE"

# (label, file suffix, function name) as cProfile names them; the first match of each counts.
WATCHED = [
    ("transactions (lock + read + write)", "store.py", "transact"),
    ("lock files (manifest and pace): acquire", "locking.py", "acquire"),
    ("lock files (manifest and pace): release", "filelock/_api.py", "release"),
    ("  manifest read (new lines; snapshot if new)", "store.py", "read"),
    ("    Manifest.from_json (a new snapshot)", "manifest.py", "from_json"),
    ("  manifest write (a line, or a compaction)", "store.py", "_write"),
    ("    to_json (the line's or snapshot's)", "manifest.py", "to_json"),
    ("    ManifestFiles.write (append, fdatasync)", "journal.py", "write"),
    ("staged result write (write_json_atomic)", "benchmarks/txn_profile.py", "stage"),
    ("pacer transactions (Pacer._update)", "pacing.py", "_update"),
    ("all json.dumps", "json/__init__.py", "dumps"),
    ("all os.fsync (files and folders)", "~", "<built-in method posix.fsync>"),
    ("all os.fdatasync (journal lines)", "~", "<built-in method posix.fdatasync>"),
    ("all fsync_dir (folders)", "atomic.py", "fsync_dir"),
    ("all tempfile.mkstemp", "tempfile.py", "mkstemp"),
    ("all os.replace", "~", "<built-in method posix.replace>"),
]

RESULT = {
    "chapter": 0,
    "scenes": [
        {
            "quote": "Wren lifted the tin lantern above the wet grass of the orchard. " * 2,
            "description": "An illustration of the orchard at night " * 3,
            "imagePrompt": "storybook painting, lantern light in an orchard " * 3,
        }
    ]
    * 2,
    "elements": [{"name": "Wren Ashby", "description": "a girl in an oilskin " * 5}] * 3,
    "usage": {"prompt_tokens": 900, "completion_tokens": 400},
}


def stage(path: Path, data: dict[str, object]) -> None:
    from imaginize.coordination.atomic import write_json_atomic

    # As the worker stages a result: the data fsynced, the folder left to the publish's rename.
    write_json_atomic(path, data, sync_dir=False)


def profile(chapters: int, cycles: int, root: Path) -> None:
    from imaginize.analysis.providers import ProviderConfig, ProviderKind
    from imaginize.coordination.claims import StopFlag
    from imaginize.coordination.manifest import Claim
    from imaginize.coordination.store import ManifestStore
    from imaginize.guides.results import CHAPTERS_DIR
    from imaginize.pacing.pace import Limits, Pacer
    from imaginize.settings import RunSettings
    from imaginize.workers.spec import WorkerSpec
    from imaginize.workers.units import Claimed, claim_next

    store = ManifestStore(root / "out")
    store.join(
        book_path=str(root / "book.epub"),
        sha256="0" * 64,
        title="Benchmark",
        chapters=[(n, f"Chapter {n}") for n in range(1, chapters + 1)],
    )
    pacer = Pacer(root / "pace", Limits(1000, 0.0))
    owner = f"bench:{os.getpid()}:w1"

    def again() -> None:
        store.join(
            book_path=str(root / "book.epub"),
            sha256="0" * 64,
            title="Benchmark",
            chapters=[(n, f"Chapter {n}") for n in range(1, chapters + 1)],
            force=range(1, chapters + 1),
        )

    offline = ProviderConfig(ProviderKind.OFFLINE, "heuristic")
    spec = WorkerSpec(str(root / "book.epub"), str(root / "out"), RunSettings(offline))
    chained = hasattr(store, "publish_and_claim")

    class Chapters:  # the claiming half of workers.units.ChapterUnits
        name, beats = "chapter", store

        def __init__(self) -> None:
            self.spec, self.store = spec, store

        def wanted(self) -> None:
            return None

        def ready(self, stop: StopFlag) -> float:
            return 0.0

    def _claim_next(*_: object) -> Claim | None:
        got = claim_next(Chapters(), owner, StopFlag())  # type: ignore[arg-type]
        return got.claim if isinstance(got, Claimed) else None

    held: list[Claim] = []  # the claim the last publish made, if any

    def one_cycle() -> None:
        claim = held.pop() if held else _claim_next(store, spec, owner, None, lambda: False)
        assert isinstance(claim, Claim), claim
        with pacer.slot():
            pass
        staged = root / "out" / CHAPTERS_DIR / f".{claim.number:03d}.{claim.token}.json"
        stage(staged, {**RESULT, "chapter": claim.number})
        if not chained:
            published = store.publish(claim.number, claim.token, staged, 1300)
        else:
            published, following = store.publish_and_claim(
                claim.number, claim.token, staged, 1300, owner, lease=600.0, max_attempts=3
            )
            if following is not None:
                held.append(following)
            elif _claim_next(store, spec, owner, None, lambda: False) is not None:
                raise RuntimeError("nothing claimed, yet the book is not settled")
        if not published:
            raise RuntimeError(f"chapter {claim.number}: claim lost")

    def run(profiler: cProfile.Profile | None) -> float:
        """Seconds for `cycles` cycles, the book started over (unmeasured) when done."""
        spent = 0.0
        for index in range(cycles):
            if index and index % chapters == 0:
                again()
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            one_cycle()
            if profiler:
                profiler.disable()
            spent += time.perf_counter() - started
        if held:
            claim = held.pop()
            store.release(claim.number, claim.token)
        again()
        return spent

    plain = run(None)
    profiler = cProfile.Profile()
    wall = run(profiler)
    stats = pstats.Stats(profiler)
    # The outermost function of each name: Manifest.from_json calls Entry.from_json, and the
    # cumulative times of the two must not be added up.
    table: dict[tuple[str, str], tuple[int, float]] = {}
    for (filename, _line, name), (_cc, calls, _tt, cumtime, _callers) in stats.stats.items():
        for _label, suffix, func in WATCHED:
            matches = name == func and (filename == suffix or filename.endswith(suffix))
            if matches and cumtime > table.get((suffix, func), (0, 0.0))[1]:
                table[(suffix, func)] = (calls, cumtime)
    print(
        f"{cycles} cycles of 2 pacer updates + stage + "
        f"{'publish_and_claim' if chained else 'claim + publish'} on a {chapters}-chapter "
        f"manifest, one process ({os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})"
    )
    print(f"{'':<44} {'ms/cycle':>9} {'calls/cycle':>12}")
    for label, suffix, func in WATCHED:
        count, total = table.get((suffix, func), (0, 0.0))
        print(f"{label:<44} {1000 * total / cycles:>9.2f} {count / cycles:>12.1f}")
    print(f"{'wall time per cycle (profiler on)':<44} {1000 * wall / cycles:>9.2f}")
    print(f"{'wall time per cycle (profiler off)':<44} {1000 * plain / cycles:>9.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    args = parser.parse_args(argv)
    if args.snapshot:
        with exported(args.snapshot) as src:
            env = {**os.environ, "PYTHONPATH": pythonpath(src), SOURCE_ENV: describe(args.snapshot)}
            command = [sys.executable, "-m", "benchmarks.txn_profile"]
            command += ["--chapters", str(args.chapters), "--cycles", str(args.cycles)]
            # Not from the repo: `python -m` puts the working folder first on sys.path,
            # ahead of PYTHONPATH, and the working tree's imaginize would be measured.
            return subprocess.run(command, env=env, cwd=src).returncode
    print(os.environ.get(SOURCE_ENV) or describe(None))
    with tempfile.TemporaryDirectory(prefix="imaginize-txn-") as tmp:
        profile(args.chapters, args.cycles, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
