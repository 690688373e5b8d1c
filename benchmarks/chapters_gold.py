"""Chapters found by `read_book` against gold chapter lists built by reading the books.

    python -m benchmarks.chapters_gold [--snapshot REV] [--details]

Three kinds of book, each with its exact expected chapter list (title, first words):
- the corpus books with a gold file in tests/data/gold/chapters/ (skipped when
  ../shared/corpus is absent);
- the same books with their table of contents emptied (`tests.epubs.without_toc`): the
  chapters must then come from the files and the in-text headings;
- small synthetic books (`tests.epubs.KNOWN_CHAPTERS`), one per way real books fooled the
  splitter (credit line, broken TOC nesting, Spanish legal front matter, imprint, no TOC).

A found chapter matches the next unmatched gold chapter whose first words its text starts
with (whitespace-normalised); per book it prints chapters expected / found, matched ones
with the exact title, extra chapters (matching no gold chapter: front matter, a credit line,
a licence) and missing ones. `read_book` runs in a child process started as
benchmarks/source.py says, so `--snapshot` measures a fixed revision.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import source
from tests.epubs import KNOWN_CHAPTERS, without_toc

GOLD = source.REPO_ROOT / "tests" / "data" / "gold" / "chapters"
CORPUS = source.REPO_ROOT.parent / "shared" / "corpus"
# Run in the child: every chapter's title and first 200 characters, as JSON, per book.
_CHILD = """
import json, sys
import imaginize
from benchmarks import source
from imaginize.reading.epub import read_book
source.check(imaginize.__file__, source.expected(), "the reader")
out = {}
for path in sys.argv[1:]:
    try:
        out[path] = [[c.title, c.text[:200]] for c in read_book(path).chapters]
    except Exception as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@dataclass
class Score:
    expected: int
    found: int
    exact_titles: int
    extra: list[str]
    missing: list[str]
    wrong_titles: list[str]

    @property
    def exact(self) -> bool:
        return self.found == self.expected == self.exact_titles


def _norm(text: str) -> str:
    return " ".join(text.split())


def score(gold: list[tuple[str, str]], found: list[tuple[str, str]]) -> Score:
    matched: dict[int, str] = {}  # gold index -> found title
    extra: list[str] = []
    nxt = 0
    for title, text in found:
        start = _norm(text)
        k = next((i for i in range(nxt, len(gold)) if start.startswith(_norm(gold[i][1]))), None)
        if k is None:
            extra.append(title)
            continue
        matched[k] = title
        nxt = k + 1
    wrong = [
        f"{matched[k]!r} for {g[0]!r}" for k, g in enumerate(gold) if matched.get(k, g[0]) != g[0]
    ]
    return Score(
        expected=len(gold),
        found=len(found),
        exact_titles=sum(1 for k, g in enumerate(gold) if matched.get(k) == g[0]),
        extra=extra,
        missing=[g[0] for k, g in enumerate(gold) if k not in matched],
        wrong_titles=wrong,
    )


def cases(root: Path) -> list[tuple[str, Path, list[tuple[str, str]]]]:
    out: list[tuple[str, Path, list[tuple[str, str]]]] = []
    if CORPUS.is_dir():
        for gold_file in sorted(GOLD.glob("*.json")):
            data = json.loads(gold_file.read_text(encoding="utf-8"))
            gold = [(c["title"], c["starts"]) for c in data["chapters"]]
            book = CORPUS / data["book"]
            out.append((gold_file.stem, book, gold))
            stripped = without_toc(book, root / book.name)
            out.append((f"{gold_file.stem} (TOC removed)", stripped, gold))
    else:
        print(f"{CORPUS} is absent: synthetic books only", file=sys.stderr)
    for name, make in KNOWN_CHAPTERS.items():
        path, gold = make(root / f"known-{len(out)}.epub")
        out.append((f"synthetic: {name}", path, gold))
    return out


def _short(names: list[str], limit: int = 3) -> str:
    more = f" +{len(names) - limit}" if len(names) > limit else ""
    return ", ".join(repr(n[:30]) for n in names[:limit]) + more


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    parser.add_argument("--details", action="store_true", help="list wrong titles in full")
    args = parser.parse_args()
    print(source.describe(args.snapshot), flush=True)
    with source.workspace(args.snapshot, "imaginize-chapters-", "the reader") as (root, src, _):
        books = cases(root)
        results = source.child_json(root, src, _CHILD, [p for _, p, _ in books])
    print(f"{'book':66} {'expect':>6} {'found':>5} {'titles':>6} {'extra':>5} {'miss':>4}  exact")
    exact = 0
    for name, path, gold in books:
        got = results[str(path)]
        if isinstance(got, str):
            print(f"{name:66} {len(gold):6} error: {got}")
            continue
        s = score(gold, [(t, x) for t, x in got])
        exact += s.exact
        print(
            f"{name:66} {s.expected:6} {s.found:5} {s.exact_titles:6} {len(s.extra):5} "
            f"{len(s.missing):4}  {'yes' if s.exact else 'NO'}"
        )
        if s.extra:
            print(f"{'':8}extra: {_short(s.extra)}")
        if s.missing:
            print(f"{'':8}missing: {_short(s.missing)}")
        if s.wrong_titles:
            shown = s.wrong_titles if args.details else s.wrong_titles[:2]
            more = len(s.wrong_titles) - len(shown)
            print(f"{'':8}titles: {'; '.join(shown)}{f' +{more}' if more else ''}")
    print(f"exact on {exact} of {len(books)} books")


if __name__ == "__main__":
    main()
