"""The offline analyzer's cast against gold cast lists built by reading the books.

    python -m benchmarks.cast_gold [--snapshot REV] [--details]

Gold files (tests/data/gold/cast/*.json, one per corpus book; skipped when ../shared/corpus
is absent) list the book's characters with the names the text calls them by, whether each is
a main character, one physical description where the book gives one (quoted, with its
chapter, and the words of it a description must contain one of), and names that are not
people (places, ships, families, books) with their kind. The offline catalogue of the whole
book (`imaginize.analysis.offline.catalogue.Catalogue`) is built in a child process started
as benchmarks/source.py says, so `--snapshot` measures a fixed revision. Per book it prints:

- real: of the top 30 entries filed as characters, how many are one real, distinct character:
  the entry's names (name and aliases) that the gold knows all belong to one character, and no
  higher entry already took that character (target >= 90%);
- merged: main characters whose names the catalogue knows all sit in one entry (target: all);
- non-people as people: gold non-people filed as characters (target: none); and how many
  are filed as their kind (place as place, ship as item, creature as creature; a family or a
  book is right when it is no character);
- looks: characters with a gold look whose entry's description carries it (target >= 70%).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import source

GOLD = source.REPO_ROOT / "tests" / "data" / "gold" / "cast"
CORPUS = source.REPO_ROOT.parent / "shared" / "corpus"
TOP = 30
# What the catalogue should file each gold kind of non-person as; None: anything but a person.
EXPECTED_KIND: dict[str, str | None] = {
    "place": "place",
    "ship": "item",
    "creature": "creature",
    "family": None,
    "book": None,
    "word": None,
}
# Run in the child: every catalogue entry of each book, as JSON.
_CHILD = """
import json, sys
import imaginize
from benchmarks import source
from imaginize.reading.epub import read_book
from imaginize.analysis.offline.catalogue import Catalogue
source.check(imaginize.__file__, source.expected(), "the offline analyzer")
out = {}
for path in sys.argv[1:]:
    cat = Catalogue([c.text for c in read_book(path).chapters])
    out[path] = [
        {"name": e.name, "kind": e.kind.value, "aliases": list(e.aliases),
         "description": e.description, "count": e.count, "common": e.common}
        for e in cat.entries
    ]
print(json.dumps(out))
"""


def norm(name: str) -> str:
    """A name as compared: lower case, straight apostrophes, no dots, no possessive."""
    n = name.replace("\u2019", "'").replace(".", " ").lower()
    n = re.sub(r"'s$", "", n.strip())
    return " ".join(n.split())


@dataclass
class Score:
    book: str
    top: int = 0
    real: int = 0
    not_real: list[str] = field(default_factory=list)
    mains: int = 0
    merged: int = 0
    split: list[str] = field(default_factory=list)
    non_people: int = 0
    as_people: list[str] = field(default_factory=list)
    as_kind: int = 0
    wrong_kind: list[str] = field(default_factory=list)
    looks: int = 0
    carried: int = 0
    not_carried: list[str] = field(default_factory=list)

    @property
    def real_share(self) -> float:
        return self.real / self.top if self.top else 0.0

    @property
    def looks_share(self) -> float:
        return self.carried / self.looks if self.looks else 0.0


def _names(entry: dict[str, Any]) -> list[str]:
    return [norm(entry["name"]), *(norm(a) for a in entry["aliases"])]


def score(gold: dict[str, Any], entries: list[dict[str, Any]]) -> Score:
    """Score a catalogue's entries (dicts with name, kind, aliases, description, common)
    against one gold file's contents."""
    s = Score(gold["title"])
    owners: dict[str, set[int]] = {}
    for i, ch in enumerate(gold["characters"]):
        for n in (ch["name"], *ch["aliases"]):
            owners.setdefault(norm(n), set()).add(i)

    def known(entry: dict[str, Any]) -> set[int]:
        # Names the gold gives to exactly one character; an ambiguous one says nothing.
        return {next(iter(owners[n])) for n in _names(entry) if len(owners.get(n, ())) == 1}

    named = [e for e in entries if not e["common"]]
    taken: dict[int, int] = {}  # gold character -> index in `entries` of the entry that took it
    people = [e for e in named if e["kind"] == "character"][:TOP]
    s.top = len(people)
    for e in people:
        chars = known(e)
        if len(chars) == 1 and next(iter(chars)) not in taken:
            s.real += 1
            taken[next(iter(chars))] = entries.index(e)
            continue
        why = "unknown" if not chars else "merges two" if len(chars) > 1 else "again"
        s.not_real.append(f"{e['name']} ({why})")
    # Characters not among the top people (creatures, or lower down) still own an entry.
    for e in entries:
        chars = known(e)
        if len(chars) == 1 and next(iter(chars)) not in taken:
            taken[next(iter(chars))] = entries.index(e)
    for i, ch in enumerate(gold["characters"]):
        if ch["main"]:
            s.mains += 1
            holders = [e["name"] for e in entries if i in known(e)]
            if len(holders) == 1:
                s.merged += 1
            else:
                s.split.append(f"{ch['name']}: {holders or 'no entry'}")
        if "look" in ch:
            s.looks += 1
            entry = entries[taken[i]] if i in taken else None
            text = entry["description"].lower() if entry else ""
            if entry and any(w.lower() in text for w in ch["look"]["words"]):
                s.carried += 1
            else:
                s.not_carried.append(f"{ch['name']}: {text[:70] if entry else 'no entry'}")
    for np in gold["not_people"]:
        found = [e for e in named if norm(np["name"]) in _names(e)]
        if not found:
            continue  # not catalogued at all: neither right nor wrong
        s.non_people += 1
        kinds = {e["kind"] for e in found}
        want = EXPECTED_KIND[np["kind"]]
        if "character" in kinds:
            s.as_people.append(np["name"])
        if (want is None and "character" not in kinds) or kinds == {want}:
            s.as_kind += 1
        else:
            s.wrong_kind.append(f"{np['name']} ({np['kind']} as {'/'.join(sorted(kinds))})")
    return s


def gold_books() -> list[tuple[dict[str, Any], Path]]:
    out = []
    for path in sorted(GOLD.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.append((data, CORPUS / data["book"]))
    return out


def _short(items: list[str], limit: int, details: bool) -> str:
    shown = items if details else items[:limit]
    more = len(items) - len(shown)
    return "; ".join(shown) + (f" +{more}" if more else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    parser.add_argument("--details", action="store_true", help="list every miss")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"cast_gold skipped: {CORPUS} is absent")
        return
    print(source.describe(args.snapshot), flush=True)
    books = gold_books()
    with source.workspace(args.snapshot, "imaginize-cast-", "the offline analyzer") as (
        root,
        src,
        _,
    ):
        results = source.child_json(root, src, _CHILD, [p for _, p in books])
    print(
        f"{'book':34} {'real in top 30':>15} {'mains merged':>13} {'non-people as people':>21} "
        f"{'as their kind':>14} {'looks carried':>14}"
    )
    for gold, path in books:
        s = score(gold, results[str(path)])
        print(
            f"{s.book[:34]:34} {f'{s.real}/{s.top} {s.real_share:.0%}':>15} "
            f"{f'{s.merged}/{s.mains}':>13} {f'{len(s.as_people)}/{s.non_people}':>21} "
            f"{f'{s.as_kind}/{s.non_people}':>14} "
            f"{f'{s.carried}/{s.looks} {s.looks_share:.0%}':>14}"
        )
        for label, items in (
            ("not real", s.not_real),
            ("split", s.split),
            ("wrong kind", s.wrong_kind),
            ("no look", s.not_carried),
        ):
            if items:
                print(f"{'':4}{label}: {_short(items, 4, args.details)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
