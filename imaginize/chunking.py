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
        pieces.extend(_fit(paragraph, max_tokens))
    chunks: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        cost = estimate_tokens(piece)
        if chunks[-1] and size + cost > max_tokens:
            chunks.append([])
            size = 0
        chunks[-1].append(piece)
        size += cost
    return [replace(chapter, text="\n\n".join(chunk)) for chunk in chunks]


def _fit(paragraph: str, max_tokens: int) -> list[str]:
    if estimate_tokens(paragraph) <= max_tokens:
        return [paragraph]
    sentences = _sentences(paragraph)
    if len(sentences) == 1:
        # No sentence ends to cut at: a hard cut every `max_tokens` characters stays in budget.
        return [paragraph[i : i + max_tokens] for i in range(0, len(paragraph), max_tokens)]
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
    return [max(1, s) for s in shares]
