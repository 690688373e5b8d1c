"""What one chapter's manifest transaction costs as the book grows: milliseconds and bytes
written per chapter at 100, 2,000 and 20,000 chapters, before and after the journal, side by
side in one run.

    python -m benchmarks.manifest_scale [--sizes 100,2000,20000] [--before REV] [--after REV]

Each (revision, size) runs in its own process (`python -P`, imaginize from a `git archive` of
the revision, or the working tree for `--after` left out): a manifest of SIZE chapters, the
first half completed, written as a format-1 manifest (which both revisions read); then what a
worker does per chapter, `ManifestStore.publish` then `claim` (publish the chapter, claim the
next: two transactions), timed together. Staging the result file is outside the timing, as
is everything but the transaction. "bytes/chapter" is what the process handed to write(2)
during the transactions (`wchar` of /proc/self/io): the manifest (or journal line) and the
lock file's record.

A journal's cost comes in two parts: a line per transaction, and now and then a compaction
(the whole manifest). So the measured window of a revision that compacts starts right after a
compaction and runs until the next one is done: its mean is the amortised cost, compaction
included. A revision that rewrites the manifest every time is measured over a fixed number of
chapters (`--cycles`, fewer for big books: each costs a full rewrite). The max column is the
slowest single transaction (the compaction, for the journal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.source import (
    REPO_ROOT,
    check,
    describe,
    environ,
    expected,
    exported,
    module,
    python,
)

SIZES = (100, 2000, 20000)
RESULT = {
    "scenes": [{"quote": "Wren lifted the tin lantern.", "description": "x" * 120}] * 2,
    "usage": {"prompt_tokens": 900, "completion_tokens": 400},
}


def _wchar() -> int | None:
    try:
        with open("/proc/self/io", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _book(out: Path, chapters: int) -> None:
    """A format-1 manifest of `chapters`, the first half completed, as both revisions read."""
    from imaginize.coordination import manifest as mf

    entries = []
    for n in range(1, chapters + 1):
        done = n <= chapters // 2
        entries.append(
            mf.Entry(
                n,
                f"Chapter {n}: The Lamp in the Orchard",
                status=mf.Status.COMPLETED if done else mf.Status.PENDING,
                claimed_at=1795393201.5 if done else None,
                heartbeat_at=1795393201.5 if done else None,
                attempts=1 if done else 0,
                token=n if done else 0,
                completed_at=1795393260.25 if done else None,
                tokens=1300 if done else 0,
            )
        )
    created = 1795393200.0
    book = ("/books/big.epub", "0" * 64, "Big")
    data = mf.Manifest(*book, tuple(entries), chapters // 2 + 1, created, created)
    raw = data.to_json()
    raw["format"] = 1
    (out / "chapters").mkdir(parents=True)
    (out / ".imaginize.manifest.json").write_text(json.dumps(raw) + "\n", encoding="utf-8")


def measure(chapters: int, cycles: int, root: Path) -> dict[str, Any]:
    """In the measured process: times and bytes of a chapter's `publish` and next `claim`."""
    import imaginize

    mf = module("imaginize.coordination.manifest")
    write_json_atomic = module("imaginize.coordination.atomic").write_json_atomic
    ManifestStore = module("imaginize.coordination.store").ManifestStore

    check(imaginize.__file__, expected(), "the measured process")
    out = root / "out"
    _book(out, chapters)
    store = ManifestStore(out)
    owner = f"bench:{os.getpid()}:w1"
    journaled = hasattr(store, "compact")
    claim = store.claim(owner, lease=600.0, max_attempts=3)
    assert claim is not None

    def reopen(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        return mf.force_pending(m, [e.number for e in m.chapters]), None

    def one() -> tuple[float, int]:
        nonlocal claim
        if claim is None:
            # A small book runs out: all of it again (unmeasured; for the journal, a line of
            # every entry, which brings the next compaction closer: the mean errs high).
            store.transact(reopen)
            claim = store.claim(owner, lease=600.0, max_attempts=3)
            assert claim is not None
        staged = out / "chapters" / f".{claim.number:03d}.{claim.token}.json"
        write_json_atomic(staged, {**RESULT, "chapter": claim.number}, sync_dir=False)
        before, started = _wchar(), time.perf_counter()
        ok = store.publish(claim.number, claim.token, staged, 1300)
        claim = store.claim(owner, lease=600.0, max_attempts=3)
        spent, after = time.perf_counter() - started, _wchar()
        if not ok:
            raise RuntimeError("a publish lost its claim")
        return spent, (after - before) if before is not None and after is not None else -1

    for _ in range(3):  # warm-up (the journal's first write upgrades format 1: a compaction)
        one()
    snapshot = out / ".imaginize.manifest.json"
    if journaled:
        store.compact()  # the window starts with an empty journal
    first = os.stat(snapshot).st_ino
    times: list[float] = []
    sizes: list[int] = []
    while True:
        spent, written = one()
        times.append(spent)
        sizes.append(written)
        if journaled and os.stat(snapshot).st_ino != first:
            break  # a whole journal cycle, its compaction included
        if not journaled and len(times) >= cycles:
            break
    return {
        "chapters": chapters,
        "transactions": len(times),
        "ms": 1000 * sum(times) / len(times),
        "max_ms": 1000 * max(times),
        "bytes": sum(sizes) / len(sizes) if min(sizes) >= 0 else None,
        "manifest_bytes": os.stat(snapshot).st_size,
        "journaled": journaled,
    }


def _child(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="imaginize-scale-") as tmp:
        print(json.dumps(measure(args.child, args.cycles, Path(tmp))))
    return 0


def _run(rev: str | None, chapters: int, cycles: int) -> dict[str, Any]:
    with exported(rev) as src, tempfile.TemporaryDirectory(prefix="imaginize-scale-") as cwd:
        command = [*python(), "-m", "benchmarks.manifest_scale", "--child", str(chapters)]
        command += ["--cycles", str(cycles)]
        done = subprocess.run(
            command, cwd=cwd, env=environ(src), capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise SystemExit(f"{describe(rev)} at {chapters} chapters failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _before_journal() -> str:
    """The last commit before the journal (imaginize/journal.py, now in coordination/) was
    added."""
    command = ["git", "-C", str(REPO_ROOT), "log", "--diff-filter=A", "--format=%H"]
    added = subprocess.run(
        [*command, "--", "imaginize/journal.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--before", help="revision to compare with (default: before journal.py)")
    parser.add_argument("--after", help="revision measured as 'after' (default: working tree)")
    parser.add_argument("--cycles", type=int, default=0, help="chapters per rewriting run")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    before = args.before or _before_journal()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"before: {describe(before)}")
    print(f"after:  {describe(args.after)}")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; per chapter = one publish + one claim"
    )
    header = (
        f"{'chapters':>8} | {'before ms':>9} {'max':>7} {'bytes':>10} {'n':>4} | "
        f"{'after ms':>8} {'max':>7} {'bytes':>8} {'n':>5} | {'snapshot':>9}"
    )
    print(header)
    print("-" * len(header))
    for chapters in sizes:
        # Each rewrite of the old format costs the whole manifest: fewer for big books.
        cycles = args.cycles or max(10, min(200, 400_000 // chapters))
        old = _run(before, chapters, cycles)
        new = _run(args.after, chapters, cycles)
        print(
            f"{chapters:>8} | {old['ms']:>9.2f} {old['max_ms']:>7.1f} {_b(old['bytes']):>10} "
            f"{old['transactions']:>4} | {new['ms']:>8.2f} {new['max_ms']:>7.1f} "
            f"{_b(new['bytes']):>8} {new['transactions']:>5} | {_b(new['manifest_bytes']):>9}",
            flush=True,
        )
    print(
        "ms, bytes: mean per chapter (after: over one whole journal cycle, its compaction "
        "included); max: slowest one; n: chapters measured; snapshot: the manifest's size"
    )
    return 0


def _b(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
