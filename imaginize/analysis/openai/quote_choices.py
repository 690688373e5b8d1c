"""Quotes a model can only copy: the chunk's sentences offered as the schema's `enum`.

A small local model asked for "a sentence copied exactly from the text" writes one of its
own (Gemma 3 270M through llama-cpp-python invented every quote: benchmarks/README.md). On a
server that turns the reply schema into a grammar (llama.cpp, vLLM, Ollama), listing the
chunk's sentences as the only values `quote` may take makes an invented quote impossible to
generate: the model still chooses the moment, but in the book's own words.

Used for local servers only, where small models are the rule and the grammar costs nothing
per request. A hosted model quotes well on its own, and a long list would count against its
schema limits (OpenAI's strict mode: 1,000 enum values, 15,000 characters for a long one).

What is not guaranteed: that the chosen sentence is a good picture; a quote is one sentence
(two when the first is short) rather than the 1-3 the prompt allows a free model.
"""

from __future__ import annotations

import re

from imaginize.analysis.openai.reply import sentence_spans

_PARAGRAPH = re.compile(r"\n\s*\n")

# A sentence shorter than this ("No.", "He waited.") is joined to the next one: alone it
# seldom shows anything to draw.
MIN_CHARS = 40
# Choices beyond these are thinned evenly over the chunk (kept within strict-mode limits,
# and a grammar of thousands of alternatives slows a server's sampling).
MAX_CHOICES = 400
MAX_TOTAL_CHARS = 15_000


def quote_choices(text: str) -> tuple[str, ...]:
    """The passages of `text` a quote may be: whole sentences as the text writes them, a
    short one joined to its neighbour in the same paragraph, each once, in order, at most
    MAX_CHOICES of them and MAX_TOTAL_CHARS in all. Empty when the text has no sentence."""
    passages: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        starts: list[int] = []  # where each passage of this paragraph begins
        start: int | None = None
        for a, b in sentence_spans(paragraph):
            start = a if start is None else start
            if len(paragraph[start:b].strip()) >= MIN_CHARS:
                starts.append(start)
                start = None
        if start is not None and starts:
            # A short last sentence belongs with the one before it.
            start = starts.pop()
        if start is not None:
            starts.append(start)
        ends = [*starts[1:], len(paragraph)]
        passages.extend(paragraph[a:b].strip() for a, b in zip(starts, ends, strict=True))
    offered = (_curled(p) for p in passages if p and "\\" not in p)
    return _thinned(list(dict.fromkeys(offered)))


def _curled(passage: str) -> str:
    """Straight double quotes as curly ones. llama-cpp-python 0.3.36 writes a `"` inside an
    enum value into its grammar as `\\"`, which ends the literal: the grammar fails to parse
    and the server process dies. The quote is matched back to the book's own words, where
    curly and straight marks are the same (reply.QuoteFinder), so nothing is lost."""
    out: list[str] = []
    opening = True
    for char in passage:
        if char == '"':
            char, opening = ("\u201c" if opening else "\u201d"), not opening
        out.append(char)
    return "".join(out)


def _thinned(passages: list[str]) -> tuple[str, ...]:
    """Every passage when they fit the limits, else an even spread over the chunk."""
    total = sum(map(len, passages))
    if len(passages) <= MAX_CHOICES and total <= MAX_TOTAL_CHARS:
        return tuple(passages)
    room = max(1, min(MAX_CHOICES, int(MAX_TOTAL_CHARS * len(passages) / total)))
    step = len(passages) / room
    out: list[str] = []
    used = 0
    for passage in (passages[int(i * step)] for i in range(room)):
        if used + len(passage) <= MAX_TOTAL_CHARS:
            out.append(passage)
            used += len(passage)
    return tuple(out)
