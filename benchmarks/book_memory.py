"""Peak memory and time of `read_book` on hostile and huge EPUBs (prints figures, asserts none).

Each case is an EPUB built in a temp folder (`tests.epubs.inflate_member`, never held in
memory whole) and read by a fresh interpreter; its peak RSS comes from `os.wait4` (that
child's own rusage: RUSAGE_CHILDREN would report the largest child so far, not this one).

    python -m benchmarks.book_memory [--snapshot REV] [--cases bomb,chapter50,...]

Careful with `--snapshot` of a revision before the read limits (46fc5da and older): its
`bomb` case took 19 GiB and 12 minutes there; leave it out with `--cases`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import source
from benchmarks.machine import LoadMonitor
from tests.epubs import PNG, build_epub, inflate_member

MiB = 1 << 20
CHAPTER = "EPUB/chapter-01.xhtml"
NAV = "EPUB/nav.xhtml"
HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body>'
TAIL = b"</body></html>"
PARAGRAPH = b"<p>The lantern swung in the wind and the orchard went dark again.</p>\n"

# Run in the child: read the book, print one line saying what came of it.
_READ = """
import sys, time
from imaginize.reading.epub import read_book
from imaginize.errors import BookError
started = time.perf_counter()
try:
    book = read_book(sys.argv[1])
    words = sum(c.word_count for c in book.chapters)
    outcome = f"read: {len(book.chapters)} chapters, {words:,} words, {len(book.warnings)} warnings"
except BookError as exc:
    outcome = f"BookError: {exc.reason}"
print(f"{time.perf_counter() - started:.2f}\\t{outcome}")
"""


def base(folder: Path, images: dict[str, bytes] | None = None) -> Path:
    chapters = [("Chapter 1", "<p>x</p>"), ("Chapter 2", "<p>The second chapter.</p>")]
    return build_epub(folder / "base.epub", chapters, images=images)


def chapter_of(size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"chapter-{size // MiB}MiB.epub"
        return inflate_member(
            base(folder), path, CHAPTER, head=HEAD, unit=PARAGRAPH, size=size, tail=TAIL
        )

    return make


def image_bomb(folder: Path) -> Path:
    path = folder / "image-bomb.epub"
    src = base(folder, images={"map.png": PNG})
    return inflate_member(src, path, "EPUB/map.png", head=PNG, unit=b"\0", size=1 << 30, tail=b"")


def nav_of(size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"nav-{size // MiB}MiB.epub"
        head = HEAD.replace(b"<body>", b'<body><nav epub:type="toc" id="toc"><ol>').replace(
            b"<html ", b'<html xmlns:epub="http://www.idpf.org/2007/ops" '
        )
        unit = b'<li><a href="chapter-01.xhtml">Chapter 1</a></li>\n'
        tail = b"</ol></nav>" + TAIL
        return inflate_member(base(folder), path, NAV, head=head, unit=unit, size=size, tail=tail)

    return make


CASES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "bomb": ("1 GiB chapter (zip bomb)", chapter_of(1 << 30)),
    "nav60": ("60 MiB nav", nav_of(60 * MiB)),
    "chapter50": ("50 MiB chapter", chapter_of(50 * MiB)),
    "chapter10": ("10 MiB chapter", chapter_of(10 * MiB)),
    "imagebomb": ("1 GiB image (zip bomb)", image_bomb),
}


def measure(book: Path, cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and the child's one-line outcome."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [*source.python(), "-c", _READ, str(book)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    out = child.stdout.read()
    child.stdout.close()
    # Reap it ourselves: wait4 gives this child's own peak RSS.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    line = out.strip().partition("\t")[2] if code == 0 else f"exit {code} {out.strip()[-200:]}"
    return wall, usage.ru_maxrss / 1024, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES)
    )
    args = parser.parse_args()
    print(source.describe(args.snapshot), flush=True)
    with (
        source.workspace(args.snapshot, "imaginize-bookmem-", "the reader") as (root, src, _),
        LoadMonitor() as load,
    ):
        env = source.environ(src)
        print(f"{'case':28} {'file':>9} {'wall s':>7} {'peak RSS':>10}  outcome")
        for key in args.cases.split(","):
            label, make = CASES[key]
            book = make(root)
            wall, rss, line = measure(book, root, env)
            size = f"{book.stat().st_size / MiB:.1f} MiB"
            print(f"{label:28} {size:>9} {wall:7.2f} {rss:7.0f} MiB  {line}", flush=True)
            book.unlink()
    print(load.describe())


if __name__ == "__main__":
    main()
