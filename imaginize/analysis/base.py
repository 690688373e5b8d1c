"""What every analysis provider offers: one chapter (or chunk) of text in, an `Analysis` out."""

from __future__ import annotations

from typing import Protocol

from imaginize.model import Analysis, Chapter


class Analyzer(Protocol):
    """A provider. `analyze` may be called with a chunk of a chapter: a `Chapter` whose text is
    a contiguous run of the chapter's paragraphs. Quotes in the result must be verbatim
    passages of `chunk.text` (whitespace-normalised)."""

    provider: str
    model: str

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        """Find up to `scenes` scenes and the elements present in `chunk`.

        Raises `imaginize.errors.ProviderError` when the chunk cannot be analysed.
        """
        ...
