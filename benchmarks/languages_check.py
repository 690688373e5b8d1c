"""The offline analyzer on other languages, verse and dash dialogue: what comes out.

    python -m benchmarks.languages_check [--snapshot REV] [--show N]

Books: the German and the verse book of ../shared/corpus (Die Verwandlung, The Waste Land;
skipped when absent; and three English novels, as controls) and the small synthetic books
of tests/language_books.py (Spanish, Russian and French with dash dialogue, German with
»guillemets«, Japanese, Chinese, Arabic, an English poem in stanzas). Each is run as a user
would (`analyze_book`, offline, in one process, in a child started as benchmarks/source.py
says, so `--snapshot` measures a fixed revision). Per book it prints:
- scenes per chapter;
- empty prompts: the image prompt holds no word of its quote (no word of 4+ letters; for
  CJK no character of the quote), so it says nothing of the moment;
- quote length: median words and characters;
- one-line quotes: the quote lies inside one short line (a paragraph of at most 12 words,
  CJK characters counting half a word; how verse lines arrive), the verse failure;
- dialogue: share of paragraphs whose first sentence the analyzer finds at least 25%
  speech (inside quotation marks or after a speech dash), against the share built so;
- warning: how many notices name the book's language (one is wanted for a language the
  offline analyzer does not read, none for English).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks import source
from tests.language_books import BOOKS, DIALOGUE

CORPUS = source.REPO_ROOT.parent / "shared" / "corpus"
CORPUS_BOOKS = {
    "Die Verwandlung (de)": "gutenberg3-pg22367-images-3.epub",
    "The Waste Land (verse)": "idpf-wasteland.epub",
    # English prose, to see that verse grouping and speech marks leave it alone.
    "Alice (en prose)": "gutenberg-pg11-alice.epub",
    "Frankenstein (en prose)": "gutenberg3-pg84-images-3.epub",
    "Gatsby (en prose)": "standardebooks-f-scott-fitzgerald_the-great-gatsby.epub",
}

# Run in the child: per book, every scene's quote and prompt, the short lines, the
# analyzer's dialogue share and the notices; as JSON.
_CHILD = r"""
import json, os, re, sys, tempfile
import imaginize
from benchmarks import source
from imaginize.api import analyze_book
from imaginize.events import ChapterFinished, Notice
from imaginize.reading.epub import read_book
try:
    from imaginize.analysis.offline.text import quoted_shares, split_text
except ImportError:
    from imaginize.analysis.text import quoted_shares, split_text
cjk = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
source.check(imaginize.__file__, source.expected(), "the analyzer")
out = {}
for path in sys.argv[1:]:
    book = read_book(path)
    events = []
    with tempfile.TemporaryDirectory() as tmp:
        analyze_book(path, output_dir=tmp, provider="offline", in_process=True,
                     on_event=events.append, use_environment=False)
    sentences = [s for c in book.chapters for s in split_text(c.text)]
    shares = quoted_shares(sentences)
    # Each paragraph's first sentence: does the paragraph open with speech?
    openers = [q for k, q in enumerate(shares)
               if k == 0 or sentences[k].para != sentences[k - 1].para]
    out[path] = {
        "language": book.language,
        "chapters": len(book.chapters),
        "scenes": [[s.quote, s.image_prompt] for e in events if isinstance(e, ChapterFinished)
                   for s in e.result.scenes],
        "lines": [" ".join(p.split()) for c in book.chapters for p in c.paragraphs
                  if len(p.split()) + len(cjk.findall(p)) / 2 <= 12],
        "speech": sum(1 for q in openers if q >= 0.25) / max(1, len(openers)),
        "notices": [e.message for e in events if isinstance(e, Notice)],
    }
print(json.dumps(out))
"""

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"


def _units(text: str) -> set[str]:
    """Words of 4+ letters (lower case), and each CJK character: what a prompt shares with
    its quote when it says something of it."""
    import re

    low = text.lower()
    cjk = set(re.findall(f"[{_CJK}]", low))
    words = {w for w in re.findall(r"[^\W\d_]{4,}", re.sub(f"[{_CJK}]", " ", low))}
    return cjk | words


def _empty(quote: str, prompt: str) -> bool:
    return not (_units(quote) & _units(prompt))


def _one_line(quote: str, lines: set[str]) -> bool:
    q = " ".join(quote.split())
    return any(q in line for line in lines)


def _language_notices(notices: list[str], language: str) -> int:
    code = language.split("-")[0].lower()
    return sum(1 for n in notices if "language" in n.lower() or f"({code})" in n.lower())


def report(name: str, data: dict, dialogue: float | None, show: int) -> None:
    scenes = data["scenes"]
    quotes = [q for q, _ in scenes]
    lines = set(data["lines"])
    empty = sum(1 for q, p in scenes if _empty(q, p))
    one_line = sum(1 for q in quotes if _one_line(q, lines))
    words = statistics.median(len(q.split()) for q in quotes) if quotes else 0
    chars = statistics.median(len(q) for q in quotes) if quotes else 0
    warned = _language_notices(data["notices"], data["language"])
    built = f" (built {dialogue:.0%})" if dialogue is not None else ""
    print(
        f"{name} [{data['language']}]: {len(scenes)} scenes / {data['chapters']} chapters"
        f" = {len(scenes) / max(1, data['chapters']):.1f}; empty prompts {empty}/{len(scenes)};"
        f" quote median {words:g} words, {chars:g} chars; one-line quotes"
        f" {one_line}/{len(scenes)}; dialogue {data['speech']:.0%}{built};"
        f" language warnings {warned}"
    )
    for q, p in scenes[:show]:
        print(f"    quote:  {q[:160]}")
        print(f"    prompt: {p[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", metavar="REV", help="measure imaginize/ as of REV")
    parser.add_argument("--show", type=int, default=0, help="print N quotes and prompts each")
    args = parser.parse_args()
    print(source.describe(args.snapshot), flush=True)
    with tempfile.TemporaryDirectory(prefix="imaginize-lang-books-") as tmp:
        books: list[tuple[str, Path, float | None]] = []
        for name, build in BOOKS.items():
            books.append((name, build(Path(tmp) / f"{name}.epub"), DIALOGUE[name]))
        for name, file in CORPUS_BOOKS.items():
            if (CORPUS / file).exists():
                books.append((name, CORPUS / file, None))
            else:
                print(f"{name}: skipped, {CORPUS / file} is absent")
        with source.workspace(args.snapshot, "imaginize-languages-", "the analyzer") as (
            root,
            src,
            _,
        ):
            env = source.environ(src)
            for key in ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL"):
                env.pop(key, None)
            found = source.child_json(root, src, _CHILD, [p for _, p, _ in books], env)
        for name, path, dialogue in books:
            report(name, found[str(path)], dialogue, args.show)


if __name__ == "__main__":
    main()
