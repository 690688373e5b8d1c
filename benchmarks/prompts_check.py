"""The offline analyzer's image prompts, checked against their own quotes and a small gold.

    python -m benchmarks.prompts_check [--snapshot REV] [--details]

Every scene the offline analyzer makes for the English corpus books (skipped when
../shared/corpus is absent) and the built-in sample book is checked against its quote. The
analysis runs in a child process started as benchmarks/source.py says, so `--snapshot`
measures a fixed revision. The checks use their own small word lists (not the analyzer's), so
a change to the analyzer's lexicon cannot move the yardstick. Per book it prints:

- empty: prompts that carry nothing of the quote: no word of it (three letters or more, not
  a function word) outside shot, light, mood and style boilerplate (target: none);
- no subject+action: prompts whose first segment does not name a subject from the quote (a
  name of a catalogued figure the quote mentions, or of one of the scene's characters when
  the quote has an I/he/she/my/his/her, or a noun of the quote: a word after a determiner or
  adjective, or a capitalised word inside a sentence) followed by a verb of the quote (a word
  of it ending in -ed/-ing or an irregular past form), or that is boilerplate;
- people: figures the quote names (a catalogued character's or creature's name or alias, as
  a whole word) missing from the prompt, or present without the look the catalogue has for
  them (its descriptor's bracketed part);
- setting misread: the scene's setting names a word that, in the quote, is no place: after
  "was", "seemed", "very", "not" ... ("it was plain that" -> "on the plain");
- simile as literal: a noun found in the quote only inside a comparison ("like a ...", "as
  if ...", "as though ...", "as pale as a ...") used as the prompt's subject, as the setting, or
  in a detail segment.

The gold (tests/data/gold/prompts/*.json) names, for about ten scenes per book chosen by
reading the quote, the subject and the action of the moment; a scene matches when its prompt's
first segment holds one of the gold subject words and one of the gold action words.
"analyse s" is the time to analyse every chapter once the book-wide catalogue is built (the
era included), to compare revisions run one after the other on a noisy machine.
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

GOLD = source.REPO_ROOT / "tests" / "data" / "gold" / "prompts"
CORPUS = source.REPO_ROOT.parent / "shared" / "corpus"
SAMPLE = source.REPO_ROOT / "samples" / "the-lanternfruit-orchard.epub"
ENGLISH = (
    "gutenberg-pg11-alice.epub",
    "gutenberg3-pg84-images-3.epub",
    "standardebooks-f-scott-fitzgerald_the-great-gatsby.epub",
)
# Run in the child: every scene of each book as the pipeline makes them, and the figures of
# the book-wide catalogue, as JSON.
_CHILD = """
import json, sys, time
import imaginize
from benchmarks import source
from imaginize.reading.epub import read_book
from imaginize.analysis.offline.analyzer import OfflineAnalyzer
from imaginize.analysis.pipeline import analyze_chapter
source.check(imaginize.__file__, source.expected(), "the offline analyzer")
out = {}
for path in sys.argv[1:]:
    book = read_book(path)
    analyzer = OfflineAnalyzer(book)
    analyzer.warm_up()
    started = time.perf_counter()
    scenes = []
    for chapter in book.chapters:
        for s in analyze_chapter(chapter, analyzer).scenes:
            scenes.append({"chapter": chapter.number, "quote": s.quote, "prompt": s.image_prompt,
                           "setting": s.setting, "characters": list(s.characters)})
    figures = [
        {"name": e.name, "aliases": list(e.aliases), "descriptor": e.descriptor}
        for e in analyzer.catalogue.entries
        if e.kind.value in ("character", "creature") and not e.common
    ]
    seconds = time.perf_counter() - started
    out[path] = {"scenes": scenes, "figures": figures, "seconds": seconds}
print(json.dumps(out))
"""


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


WORD_RE = re.compile(r"[A-Za-z\u00C0-\u024F]+(?:['\u2019\-][A-Za-z\u00C0-\u024F]+)*")
FUNCTION = wordset(
    """
    the and but for nor yet with from into onto upon over under about after before behind
    between through across along around among against toward towards this that these those
    there here then than when where while which who whom whose what his her hers its their
    theirs our ours your yours him she they them you was were are been being had has have
    not all any some each every one two very too just only also even still again such own
    said would could should might must shall will can did does done himself herself itself
    themselves myself out off down away back more most much many few little like though
    """
)
DETERMINERS = wordset("a an the his her its their my our your this that these those some")
COPULAS = wordset(
    """
    was is were are be been being seemed seems looked looks appeared felt grew quite very so
    too more most perfectly not rather pretty
    """
)
# Composition, light, mood and style words: a prompt made of nothing else says nothing.
BOILERPLATE = wordset(
    """
    wide establishing shot medium close-up full-length two-shot group scene with of in frame
    on the by light daylight interior soft natural bright warm pale fresh harsh low golden
    dim deep strong shadows dusky twilight night near darkness gloomy half-light diffuse
    foggy misty stormy overcast grey rainy cold white winter glow glittering gleaming
    highlights flickering torchlight lantern lamplight moonlight starlight candlelight
    firelight sunlight sunset sunrise dawn morning afternoon evening midday sun shafts
    flashes lightning mood quiet observational serene joyful tense ominous melancholy
    romantic whimsical majestic detailed storybook illustration era set
    """
)
IRREGULAR_PAST = wordset(
    """
    ran sat stood lay fell rose flew swam sang drank ate threw took gave came went saw held
    struck fought caught brought bought built burst broke chose clung crept dealt dug drew
    drove fled flung forgot froze got grew hung hid hit hurt kept knelt knew laid led leapt
    leant left lent let lit lost made meant met paid put quit read rode rang rid sank sent
    set shook shone shot shut slept slid slung spat spoke sprang spun split spread stole
    stuck stung strode strove swept swung tore told thought wore wove wept won wound wrote
    bore beat bent bit bled blew bound bred
    """
)


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def segments(prompt: str) -> list[str]:
    return [p.strip() for p in prompt.split(";") if p.strip()]


def content(text: str) -> set[str]:
    return {w.lower() for w in words(text) if len(w) >= 3 and w.lower() not in FUNCTION}


def is_verb(word: str) -> bool:
    w = word.lower()
    return (len(w) > 4 and (w.endswith("ed") or w.endswith("ing"))) or w in IRREGULAR_PAST


def quote_nouns(quote: str) -> set[str]:
    """Words of the quote used as nouns: after a determiner (up to two words between), or
    capitalised inside a sentence."""
    toks = words(quote)
    out: set[str] = set()
    for i, t in enumerate(toks):
        low = t.lower()
        if low in FUNCTION or low in DETERMINERS or len(low) < 3:
            continue
        if any(toks[j].lower() in DETERMINERS for j in range(max(0, i - 3), i)):
            out.add(low)
        if i > 0 and t[:1].isupper() and not re.search(r"[.!?]\W*$", _before(quote, t)):
            out.add(low)
    return out


def _before(quote: str, token: str) -> str:
    at = quote.find(token)
    return quote[max(0, at - 3) : at] if at > 0 else ""


def named_in(quote: str, figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures the quote names; where names overlap ("Mrs. Wilson" and "Wilson") the longest
    one says who is meant."""
    spans: list[tuple[int, int, int]] = []
    for i, f in enumerate(figures):
        for n in (f["name"], *f["aliases"]):
            if n:
                for m in re.finditer(rf"(?<![\w']){re.escape(n)}(?![\w])", quote):
                    spans.append((m.start(), m.end(), i))
    kept = [
        (a, b, i)
        for a, b, i in spans
        if not any(c <= a and b <= d and d - c > b - a for c, d, _ in spans)
    ]
    return [figures[i] for i in dict.fromkeys(i for _, _, i in kept)]


PRONOUN_RE = re.compile(r"\b(?:I|he|she|my|his|her|me|him)\b", re.IGNORECASE)


def subject_action_first(
    prompt: str,
    quote: str,
    people: list[dict[str, Any]],
    referred: list[dict[str, Any]] | None = None,
) -> bool:
    """Whether the prompt's first segment names a subject of the quote, then a verb of it."""
    segs = segments(prompt)
    if not segs:
        return False
    first = segs[0]
    toks = words(first)
    if not content(first) - BOILERPLATE:
        return False
    quote_words = {w.lower() for w in words(quote)}
    subjects = quote_nouns(quote)
    names = [n for f in people for n in (f["name"], *f["aliases"]) if n]
    if referred:
        names += [n for f in referred for n in (f["name"], *f["aliases"]) if n]
    subject_at = None
    for n in sorted(names, key=len, reverse=True):
        at = first.find(n)
        if at >= 0:
            subject_at = len(words(first[:at]))
            break
    if subject_at is None:
        subject_at = next((i for i, t in enumerate(toks) if t.lower() in subjects), None)
    if subject_at is None:
        return False
    return any(is_verb(t) and t.lower() in quote_words for t in toks[subject_at + 1 :])


# A comparison: "like (a) ...", "as if ...", "as though ...", "as pale as a ..." up to the
# next clause mark or "and". "like" after a subject or an auxiliary is the verb ("I like").
_SIMILE_RE = re.compile(
    r"(?<!\bI )(?<!\bwe )(?<!\byou )(?<!\bthey )(?<!\bwould )(?<!\bshould )(?<!\bdid )(?<!\bnot )"
    r"\b(?:like(?! to\b)|as if|as though|as \w+ as (?=(?:a|an|the)\b))\s+"
    r"([^,;:.!?\u2014\u2013()]*?)(?=\s+and\b|[,;:.!?\u2014\u2013()]|$)",
    re.IGNORECASE,
)


def simile_words(quote: str) -> set[str]:
    """Nouns the quote uses only inside a comparison."""
    inside: set[str] = set()
    for m in _SIMILE_RE.finditer(quote):
        inside |= content(m.group(1))
    return inside - content(_SIMILE_RE.sub(" ", quote))


def setting_misread(setting: str, quote: str) -> bool:
    """The setting's head word is in the quote, but only as no place ("was plain")."""
    if not setting:
        return False
    head = words(setting.split(",")[0])[-1].lower() if words(setting.split(",")[0]) else ""
    toks = [t.lower() for t in words(quote)]
    at = [i for i, t in enumerate(toks) if t == head]
    if not at:
        return False
    return all(i > 0 and toks[i - 1] in COPULAS for i in at)


@dataclass
class Score:
    book: str
    scenes: int = 0
    empty: list[str] = field(default_factory=list)
    no_subject: list[str] = field(default_factory=list)
    named: int = 0
    missing: list[str] = field(default_factory=list)
    with_look: int = 0
    no_look: list[str] = field(default_factory=list)
    misread: list[str] = field(default_factory=list)
    simile: list[str] = field(default_factory=list)
    gold: int = 0
    gold_found: int = 0
    gold_match: int = 0
    gold_miss: list[str] = field(default_factory=list)


def check(book: str, data: dict[str, Any], gold: list[dict[str, Any]]) -> Score:
    s = Score(book)
    figures = data["figures"]
    for sc in data["scenes"]:
        s.scenes += 1
        quote, prompt = sc["quote"], sc["prompt"]
        short = f"{quote[:50]!r} -> {prompt[:70]!r}"
        if not content(prompt) - BOILERPLATE & content(quote):
            s.empty.append(short)
        people = named_in(quote, figures)
        # A figure the quote calls "I", "she" or "his": any figure of the prompt's people.
        referred = (
            [f for f in figures if f["name"] in sc["characters"]]
            if PRONOUN_RE.search(quote)
            else []
        )
        if not subject_action_first(prompt, quote, people, referred):
            s.no_subject.append(short)
        for f in people:
            s.named += 1
            if f["name"] not in prompt:
                s.missing.append(f"{f['name']} in {quote[:50]!r}")
                continue
            look = re.search(r"\((.*)\)$", f["descriptor"])
            if look:
                s.with_look += 1
                if look.group(1) not in prompt:
                    s.no_look.append(f"{f['descriptor']} in {prompt[:60]!r}")
        if setting_misread(sc["setting"], quote):
            s.misread.append(f"{sc['setting']!r} from {quote[:60]!r}")
        similes = simile_words(quote)
        if similes:
            segs = segments(prompt)
            first = words(segs[0]) if segs else []
            subject = next((w.lower() for w in first if w.lower() not in DETERMINERS), "")
            used = (content(sc["setting"]) & similes) | ({subject} & similes)
            for seg in segs[1:]:
                if "(" not in seg:
                    used |= content(seg) & similes
            used -= BOILERPLATE  # "like a good illustration" says nothing of the style
            if used:
                s.simile.append(f"{sorted(used)} from {quote[:60]!r}")
    for g in gold:
        s.gold += 1
        start = " ".join(g["quote_start"].split())
        found = [sc for sc in data["scenes"] if " ".join(sc["quote"].split()).startswith(start)]
        if not found:
            s.gold_miss.append(f"no scene {start[:40]!r}")
            continue
        s.gold_found += 1
        first = segments(found[0]["prompt"])[:1]
        head = first[0].lower() if first else ""
        if any(x.lower() in head for x in g["subject"]) and any(
            x.lower() in head for x in g["action"]
        ):
            s.gold_match += 1
        else:
            s.gold_miss.append(f"{g['subject'][0]}/{g['action'][0]}: {head[:70]!r}")
    return s


def books() -> list[tuple[str, Path, list[dict[str, Any]]]]:
    """(label, path, gold scenes) of every book to check that is here."""
    gold: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(GOLD.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        gold[data["book"]] = data["scenes"]
    out = []
    if CORPUS.is_dir():
        for name in ENGLISH:
            out.append((name.split(".")[0][-30:], CORPUS / name, gold.get(name, [])))
    out.append(("sample", SAMPLE, gold.get(SAMPLE.name, [])))
    return out


def _short(items: list[str], limit: int, details: bool) -> str:
    shown = items if details else items[:limit]
    more = len(items) - len(shown)
    return " | ".join(shown) + (f" +{more}" if more else "")


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} {part / whole:.0%}" if whole else "0/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    parser.add_argument("--details", action="store_true", help="list every miss")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"prompts_check: {CORPUS} is absent; the sample book only")
    print(source.describe(args.snapshot), flush=True)
    todo = books()
    with source.workspace(args.snapshot, "imaginize-prompts-", "the offline analyzer") as (
        root,
        src,
        _,
    ):
        results = source.child_json(root, src, _CHILD, [p for _, p, _ in todo])
    print(
        f"{'book':31} {'scenes':>6} {'empty':>5} {'no subj+action':>14} {'named missing':>13} "
        f"{'no look':>9} {'setting misread':>15} {'simile':>6} {'gold':>10} {'analyse s':>9}"
    )
    for label, path, gold in todo:
        s = check(label, results[str(path)], gold)
        print(
            f"{label:31} {s.scenes:>6} {len(s.empty):>5} {_pct(len(s.no_subject), s.scenes):>14} "
            f"{f'{len(s.missing)}/{s.named}':>13} {f'{len(s.no_look)}/{s.with_look}':>9} "
            f"{len(s.misread):>15} {len(s.simile):>6} {f'{s.gold_match}/{s.gold}':>10} "
            f"{results[str(path)]['seconds']:>9.2f}"
        )
        for what, items in (
            ("empty", s.empty),
            ("no subject+action", s.no_subject),
            ("named missing", s.missing),
            ("no look", s.no_look),
            ("setting misread", s.misread),
            ("simile", s.simile),
            ("gold miss", s.gold_miss),
        ):
            if items:
                print(f"{'':4}{what}: {_short(items, 2, args.details)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
