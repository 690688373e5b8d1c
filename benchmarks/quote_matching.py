"""How close a model's near quote must be to a passage to be taken for it (reply.NEAR_RATIO).

Positives: sentences of real books, changed the way weaker models change quotes (a word
dropped, a word swapped for a synonym-like word, an ellipsis over the middle, punctuation and
case changed, a clause cut, two sentences run together with one word wrong); each should be
matched to the passage it came from. Negatives: the same changed quotes looked for in another
chapter of the book, where any match is wrong. Prints, per threshold, the share of positives
matched to the right passage and the share of negatives wrongly matched.

    python -m benchmarks.quote_matching [--per-chapter 40]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path
from unittest import mock

from imaginize.analysis.openai import reply
from imaginize.reading.epub import read_book

ROOT = Path(__file__).resolve().parents[1]
BOOKS = [
    ROOT / "samples" / "the-lanternfruit-orchard.epub",
    *sorted((ROOT.parent / "shared" / "corpus").glob("gutenberg*.epub")),
    *sorted((ROOT.parent / "shared" / "corpus").glob("standardebooks*.epub")),
]
SWAPS = ["old", "dark", "little", "then", "very", "quickly", "great", "the", "and", "said"]


def damaged(sentence: str, rng: random.Random, how: str) -> str:
    words = sentence.split()
    if how == "drop":
        del words[rng.randrange(len(words))]
    elif how == "swap":
        words[rng.randrange(len(words))] = rng.choice(SWAPS)
    elif how == "ellipsis":
        a = len(words) // 3
        words = [*words[:a], "...", *words[2 * a :]]
    elif how == "punctuation":
        text = re.sub(r"[,;:!?\"'\u201c\u201d\u2018\u2019-]", "", sentence).lower()
        return text.rstrip(".") + "."
    elif how == "clause":
        words = words[: max(4, int(len(words) * 0.7))]
    elif how == "two-words":
        for _ in range(2):
            words[rng.randrange(len(words))] = rng.choice(SWAPS)
    return " ".join(words)


KINDS = ["drop", "swap", "ellipsis", "punctuation", "clause", "two-words"]


def sentences_of(text: str) -> list[str]:
    finder = reply.QuoteFinder(text)
    spans = finder._sentence_spans()
    out = [text[a:b].strip() for a, b, words in spans if 8 <= len(words) <= 60]
    return [s for s in out if "\n" not in s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-chapter", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(7)
    cases: list[tuple[str, str, str, str]] = []  # (chapter text, other text, quote, truth)
    for path in BOOKS:
        if not path.exists():
            continue
        chapters = [c.text for c in read_book(path).chapters if len(c.text) > 2000][:12]
        for index, text in enumerate(chapters):
            other = chapters[(index + 1) % len(chapters)]
            if other == text:
                continue
            picked = sentences_of(text)
            for sentence in rng.sample(picked, min(args.per_chapter, len(picked))):
                quote = damaged(sentence, rng, rng.choice(KINDS))
                if reply.QuoteFinder(text).find(quote) is None:
                    cases.append((text, other, quote, sentence))
    print(f"{len(cases)} changed quotes from {sum(p.exists() for p in BOOKS)} books")
    print(f"{'ratio':>6} {'matched right':>14} {'matched wrong':>14} {'false match':>12}")
    for threshold in (0.55, 0.6, 0.65, 0.7, 0.72, 0.75, 0.8, 0.85, 0.9):
        right = wrong = false = 0
        with mock.patch.object(reply, "NEAR_RATIO", threshold):
            for text, other, quote, truth in cases:
                found = reply.QuoteFinder(text).closest(quote)
                if found is not None:
                    if truth in found:
                        right += 1
                    else:
                        wrong += 1
                if reply.QuoteFinder(other).closest(quote) is not None:
                    false += 1
        n = len(cases)
        print(f"{threshold:>6.2f} {right / n:>14.1%} {wrong / n:>14.1%} {false / n:>12.1%}")


if __name__ == "__main__":
    main()
