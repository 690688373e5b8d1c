"""The offline analyzer on a 2,000-chapter book: what a user waits for, and what it costs.

    python -m benchmarks.offline_scale [--snapshot REV ...] [--chapters 2000] [--words 1000]
                                       [--jobs default,1,2] [--again] [--no-split]

Issue 11's target: a 2,000-chapter book offline in under 60 s here, the worker under 300 MB.

The book is built once in a temp folder: `--chapters` chapters of about `--words` words, cut
at paragraph ends from the text of the corpus's English novels (Alice, Frankenstein, Gatsby,
one after the other) when ../shared/corpus is present, else from the built-in sample book.
Each pass over that text leaves out other paragraphs, so no chapter repeats another (checked).

For each revision (`--snapshot REV`, repeatable, `-` for the working tree; several are
measured side by side, one run after the other for each `-j`) and each `-j`:

- the real CLI, `imaginize BOOK -o OUT [-j N]` with no API key (offline), its own
  XDG_CACHE_HOME and XDG_CONFIG_HOME: wall clock from start to exit (which must be 0), and
  the peak RSS of every process of the run (VmHWM from /proc, read every 0.1 s while each
  lives): the CLI, the forkserver, each worker;
- with `--again`, the first `-j` once more with `--force` into the same folder: what a second
  run, or another terminal, on the same book waits for;
- unless `--no-split`, the same work in one process, step by step: reading the EPUB, the
  book-wide catalogue (`OfflineAnalyzer.warm_up`), `analyze_chapter` of every chapter, and
  writing the results and guides; with the peak RSS after each step (ru_maxrss).
"""

from __future__ import annotations

import argparse
import html
import itertools
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import source
from benchmarks.machine import LoadMonitor
from tests.epubs import build_epub

CORPUS = source.REPO_ROOT.parent / "shared" / "corpus"
NOVELS = (
    "gutenberg-pg11-alice.epub",
    "gutenberg3-pg84-images-3.epub",
    "standardebooks-f-scott-fitzgerald_the-great-gatsby.epub",
)
SAMPLE = source.REPO_ROOT / "samples" / "the-lanternfruit-orchard.epub"
MiB = 1 << 20
_KEYS = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL")

# Run in the child: the CLI's work in one process, step by step.
_SPLIT = """
import resource, sys, time
from pathlib import Path
import imaginize
from benchmarks import source
source.check(imaginize.__file__, source.expected(), "the split")
from imaginize.reading.epub import read_book
from imaginize.analysis.offline.analyzer import OfflineAnalyzer
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.guides.merge import write_guides
from imaginize.guides.results import write_result
from imaginize.run import book_info

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

out = Path(sys.argv[2])
(out / "chapters").mkdir(parents=True, exist_ok=True)
t = time.perf_counter()
book = read_book(sys.argv[1])
print(f"reading\\t{time.perf_counter() - t:.2f}\\t{peak():.0f}", flush=True)
t = time.perf_counter()
analyzer = OfflineAnalyzer(book)
analyzer.warm_up()
print(f"catalogue\\t{time.perf_counter() - t:.2f}\\t{peak():.0f}", flush=True)
t = time.perf_counter()
results = {c.number: analyze_chapter(c, analyzer) for c in book.chapters}
print(f"analysis\\t{time.perf_counter() - t:.2f}\\t{peak():.0f}", flush=True)
t = time.perf_counter()
for r in results.values():
    write_result(out, r)
write_guides(out, book_info(book), results)
print(f"writing\\t{time.perf_counter() - t:.2f}\\t{peak():.0f}", flush=True)
"""


def corpus_paragraphs() -> tuple[list[str], str]:
    """The paragraphs to cut chapters from, and where they come from."""
    from imaginize.reading.epub import read_book

    paths = [CORPUS / name for name in NOVELS]
    if not all(p.is_file() for p in paths):
        paths, said = [SAMPLE], f"the sample book ({SAMPLE.name}; {CORPUS} is absent)"
    else:
        said = "the corpus's Alice, Frankenstein and Gatsby"
    paras = [
        p.strip()
        for path in paths
        for chapter in read_book(path).chapters
        for p in chapter.text.split("\n\n")
        if p.strip()
    ]
    return paras, said


def build_book(folder: Path, chapters: int, words: int) -> tuple[Path, str]:
    """A `chapters`-chapter EPUB of about `words` words a chapter, and what it is made of.
    Each pass over the text leaves out a different fifth of its paragraphs, so no chapter
    repeats another: chapters cut at paragraph ends from the same text would line up again
    after a few chapters, whatever paragraph a pass began at."""
    paras, said = corpus_paragraphs()
    docs: list[tuple[str, str]] = []
    order = _passes(paras)
    total = 0
    seen: set[str] = set()
    for number in range(1, chapters + 1):
        body: list[str] = []
        count = 0
        # One paragraph longer than a chapter makes a chapter of its own on every pass that
        # keeps it: such a chapter takes the next paragraph too.
        while count < words or "".join(body) in seen:
            text = next(order)
            body.append(f"<p>{html.escape(text)}</p>")
            count += len(text.split())
        total += count
        seen.add("".join(body))
        docs.append((f"Chapter {number}", "".join(body)))
    distinct = len({body for _, body in docs})
    if distinct != chapters:
        raise SystemExit(f"offline_scale: only {distinct} of {chapters} chapters differ")
    path = build_epub(folder / "offline-scale.epub", docs, title="Offline Scale")
    mib = path.stat().st_size / MiB
    return path, f"{chapters:,} distinct chapters, {total:,} words ({mib:.1f} MiB EPUB) from {said}"


def _passes(paras: list[str]) -> Iterator[str]:
    """The paragraphs, pass after pass; pass k > 0 leaves out a fifth of them, drawn by a
    generator seeded with k (the same book every run)."""
    for k in itertools.count():
        draw = random.Random(k)
        for text in paras:
            if k == 0 or draw.random() >= 0.2:
                yield text


@dataclass
class Proc:
    role: str
    peak_kib: int = 0


@dataclass
class Run:
    label: str
    wall: float = 0.0
    rc: int = 0
    procs: dict[int, Proc] = field(default_factory=dict)
    split: list[tuple[str, float, float]] = field(default_factory=list)

    def workers(self) -> list[int]:
        return [p.peak_kib for p in self.procs.values() if p.role == "worker"]

    def peak_of(self, role: str) -> int:
        return max((p.peak_kib for p in self.procs.values() if p.role == role), default=0)


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _role(pid: int, parent_role: str | None) -> str:
    if parent_role == "forkserver":
        return "worker"  # forked: its command line is the forkserver's
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    if "forkserver" in cmd:
        return "forkserver"
    if "resource_tracker" in cmd:
        return "resource tracker"
    return "other"


def sample(root: int, run: Run) -> None:
    """Record the peak RSS so far of `root` and every process below it."""
    kids = _children()
    todo: list[tuple[int, str | None]] = [(root, None)]
    while todo:
        pid, parent = todo.pop()
        proc = run.procs.get(pid)
        if proc is None:
            proc = run.procs[pid] = Proc("cli" if pid == root else _role(pid, parent))
        hwm = _hwm_kib(pid)
        if hwm is not None:
            proc.peak_kib = max(proc.peak_kib, hwm)
        todo += [(k, proc.role) for k in kids.get(pid, [])]


def run_cli(
    book: Path, root: Path, src: Path | None, jobs: str, label: str, again: bool = False
) -> Run:
    """`imaginize BOOK` offline; `again`: with --force, into the folder of the run before."""
    out = root / f"out-{label}-{jobs}"
    env = source.environ(
        src, XDG_CACHE_HOME=str(root / f"cache-{label}-{jobs}"), XDG_CONFIG_HOME=str(root)
    )
    for key in _KEYS:
        env.pop(key, None)
    cmd = [*source.python(), "-m", "imaginize", str(book), "-o", str(out)]
    if jobs != "default":
        cmd += ["-j", jobs]
    if again:
        cmd += ["--force"]
    run = Run(f"{label} -j {jobs}")
    with open(root / f"log-{label}-{jobs}{'-again' if again else ''}.txt", "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            sample(proc.pid, run)
            time.sleep(0.1)
        run.wall = time.perf_counter() - started
    run.rc = proc.returncode
    if run.rc != 0:
        tail = (root / f"log-{label}-{jobs}.txt").read_text().splitlines()[-5:]
        print(f"  {run.label}: exit {run.rc}: " + " | ".join(tail), file=sys.stderr)
    return run


Split = list[tuple[str, float, float]]  # (step, seconds, peak RSS MiB after it)


def run_split(book: Path, root: Path, src: Path | None, label: str) -> Split:
    out = root / f"split-{label}"
    done = subprocess.run(
        [*source.python(), "-c", _SPLIT, str(book), str(out)],
        cwd=root,
        env=source.environ(src),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("\t") for line in done.stdout.splitlines() if "\t" in line]
    return [(step, float(s), float(mib)) for step, s, mib in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--snapshot",
        metavar="REV",
        action="append",
        help="measure imaginize/ as of REV ('-': the working tree); repeat to compare",
    )
    parser.add_argument("--chapters", type=int, default=2000)
    parser.add_argument("--words", type=int, default=1000, help="words a chapter (about)")
    parser.add_argument(
        "--jobs", default="default,1,2", help="-j values, comma-separated ('default': none)"
    )
    parser.add_argument("--no-split", action="store_true", help="skip the in-process split")
    parser.add_argument(
        "--again",
        action="store_true",
        help="then the first -j once more with --force into the same folder (a second run)",
    )
    args = parser.parse_args()
    # Each REV fixed to its commit now: HEAD moves while others commit.
    revs = [None if r == "-" else _commit(r) for r in (args.snapshot or ["-"])]
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    with tempfile.TemporaryDirectory(prefix="imaginize-offline-scale-") as tmp:
        folder = Path(tmp)
        book, said = build_book(folder, args.chapters, args.words)
        print(f"book: {said}", flush=True)
        runs: dict[str | None, list[Run]] = {r: [] for r in revs}
        with LoadMonitor() as load, ExitStack() as stack:
            names = {rev: source.describe(rev) for rev in revs}
            spaces = {
                rev: stack.enter_context(
                    source.workspace(rev, "imaginize-offline-scale-", "the CLI")
                )[:2]
                for rev in revs
            }
            for j in jobs:
                for i, rev in enumerate(revs):
                    root, src = spaces[rev]
                    run = run_cli(book, root, src, j, f"r{i}")
                    run.label = f"{names[rev]} -j {j}"
                    runs[rev].append(run)
                    _print_run(run)
            if args.again:
                j = jobs[0]
                for i, rev in enumerate(revs):
                    root, src = spaces[rev]
                    run = run_cli(book, root, src, j, f"r{i}", again=True)
                    run.label = f"{names[rev]} -j {j} --force, again"
                    _print_run(run)
            if not args.no_split:
                for i, rev in enumerate(revs):
                    root, src = spaces[rev]
                    split = run_split(book, root, src, f"r{i}")
                    _print_split(names[rev], split)
        print(load.describe())


def _commit(rev: str) -> str:
    found = subprocess.run(
        ["git", "-C", str(source.REPO_ROOT), "rev-parse", "--short", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


def _print_run(run: Run) -> None:
    workers = run.workers()
    each = ", ".join(f"{k / 1024:.0f}" for k in sorted(workers, reverse=True))
    print(
        f"CLI  {run.label}: exit {run.rc}, {run.wall:.1f} s; peak RSS MiB: CLI "
        f"{run.peak_of('cli') / 1024:.0f}, forkserver {run.peak_of('forkserver') / 1024:.0f}, "
        f"workers [{each}]",
        flush=True,
    )


def _print_split(name: str, split: Split) -> None:
    steps = ", ".join(f"{step} {s:.1f} s" for step, s, _ in split)
    total = sum(s for _, s, _ in split)
    peaks = " / ".join(f"{mib:.0f}" for _, _, mib in split)
    print(f"split {name}: {steps} (total {total:.1f} s); peak RSS after each, MiB: {peaks}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
