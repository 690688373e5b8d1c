"""Sizing work: how many scenes a chapter deserves and how to cut it into request-sized chunks.

Sizes are counted in estimated tokens, not whitespace words: CJK text has almost no spaces,
so a word count would call a 50,000-character Japanese chapter a few hundred words long.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

from imaginize.model import Chapter

WORDS_PER_PAGE = 300
# CJK and similar scripts: roughly one token per character, and ~500 characters per page.
_WIDE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_CHARS_PER_WORD = 1.7
_PARAGRAPH_BREAK = "\n\n"
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])[\"'\u201d\u2019)]*\s*")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 characters a token for alphabetic scripts, 1 for CJK."""
    wide = len(_WIDE.findall(text))
    return wide + math.ceil((len(text) - wide) / 4)


def word_equivalents(text: str) -> int:
    wide = len(_WIDE.findall(text))
    if not wide:
        return len(text.split())
    return len(_WIDE.sub(" ", text).split()) + round(wide / _CJK_CHARS_PER_WORD)


def scene_count(text: str, pages_per_image: float) -> int:
    """One scene per `pages_per_image` pages of 300 words, at least one."""
    if pages_per_image <= 0:
        raise ValueError("pages_per_image must be positive")
    pages = word_equivalents(text) / WORDS_PER_PAGE
    return max(1, round(pages / pages_per_image))


def split_chapter(chapter: Chapter, max_tokens: int) -> list[Chapter]:
    """Contiguous runs of whole paragraphs, each within `max_tokens` where a paragraph allows;
    an oversized paragraph is cut at sentence ends, and a sentence-less run by characters."""
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    if estimate_tokens(chapter.text) <= max_tokens:
        return [chapter]
    pieces: list[str] = []
    for paragraph in chapter.paragraphs:
        # A hard cut can leave a slice of bare whitespace: no chunk should be only that.
        pieces.extend(piece for piece in _fit(paragraph, max_tokens) if piece.strip())
    # Count wide and narrow characters of the joined text, "\n\n" separators included:
    # summing per-piece estimates rounds each piece down and lets a chunk overshoot.
    chunks: list[list[str]] = [[]]
    wide = narrow = 0
    for piece in pieces:
        piece_wide = len(_WIDE.findall(piece))
        piece_narrow = len(piece) - piece_wide
        sep = len(_PARAGRAPH_BREAK) if chunks[-1] else 0
        cost = wide + piece_wide + math.ceil((narrow + sep + piece_narrow) / 4)
        if chunks[-1] and cost > max_tokens:
            chunks.append([])
            wide = narrow = sep = 0
        chunks[-1].append(piece)
        wide += piece_wide
        narrow += piece_narrow + sep
    return [replace(chapter, text=_PARAGRAPH_BREAK.join(chunk)) for chunk in chunks]


def _fit(paragraph: str, max_tokens: int) -> list[str]:
    if estimate_tokens(paragraph) <= max_tokens:
        return [paragraph]
    sentences = _sentences(paragraph)
    if len(sentences) == 1:
        return _hard_cut(paragraph, max_tokens)
    out: list[str] = []
    current = ""
    for sentence in sentences:
        if current and estimate_tokens(current + sentence) > max_tokens:
            out.extend(_fit(current.strip(), max_tokens))
            current = ""
        current += sentence
    if current.strip():
        out.extend(_fit(current.strip(), max_tokens))
    return out


def _hard_cut(text: str, max_tokens: int) -> list[str]:
    """No sentence ends to cut at: the longest slices within budget, ending after a space
    where the slice has one in its second half (so words stay whole); the slices concatenate
    back to `text` exactly."""
    out: list[str] = []
    start = 0
    while start < len(text):
        # Any `max_tokens` characters fit (a character is at most one token), and no slice
        # longer than 4 * max_tokens does (a narrow character is a quarter token).
        low, high = min(len(text), start + max_tokens), min(len(text), start + 4 * max_tokens)
        while low < high:
            middle = (low + high + 1) // 2
            if estimate_tokens(text[start:middle]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        end = low
        if end < len(text):
            space = max(text.rfind(c, start, end) for c in (" ", "\n", "\t"))
            if space >= start + (end - start) // 2:
                end = space + 1
        out.append(text[start:end])
        start = end
    return out


def _sentences(text: str) -> list[str]:
    """Slices of `text` that concatenate back to it exactly (CJK has no spaces to re-insert)."""
    cuts = [m.end() for m in _SENTENCE_END.finditer(text) if 0 < m.end() < len(text)]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def share_scenes(total: int, chunks: list[Chapter]) -> list[int]:
    """Split `total` scenes across chunks in proportion to their size, at least one each."""
    sizes = [max(1, estimate_tokens(c.text)) for c in chunks]
    whole = sum(sizes)
    exact = [total * s / whole for s in sizes]
    shares = [math.floor(x) for x in exact]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(chunks)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:leftover]:
        shares[i] += 1
    if total < len(chunks):
        return [max(1, s) for s in shares]
    # Every chunk gets one scene; the scene it needs comes from the chunk whose share most
    # exceeds its exact value, so the shares still add up to `total`.
    for i in range(len(shares)):
        if shares[i] == 0:
            donor = max(
                (j for j in range(len(shares)) if shares[j] > 1),
                key=lambda j: (shares[j] - exact[j], -j),
            )
            shares[donor] -= 1
            shares[i] = 1
    return shares


def halve(chapter: Chapter) -> list[Chapter]:
    """The chapter in two at the paragraph break nearest its middle, else at the sentence end
    nearest it; unchanged (one part) when it is a single sentence, which is never cut."""
    for separator, pieces in (
        (_PARAGRAPH_BREAK, chapter.paragraphs),
        ("", _sentences(chapter.text)),
    ):
        if sum(1 for p in pieces if p.strip()) < 2:
            continue
        sizes = list(itertools.accumulate(estimate_tokens(p) for p in pieces))
        cut = min(range(1, len(pieces)), key=lambda i: abs(sizes[-1] - 2 * sizes[i - 1]))
        return [
            replace(chapter, text=separator.join(pieces[:cut]).strip()),
            replace(chapter, text=separator.join(pieces[cut:]).strip()),
        ]
    return [chapter]
