"""What every analysis provider offers: one chapter (or chunk) of text in, an `Analysis` out."""

from __future__ import annotations

from typing import Protocol

from imaginize.model import Analysis, Chapter, Usage


class Analyzer(Protocol):
    """A provider. `analyze` may be called with a chunk of a chapter: a `Chapter` whose text is
    a contiguous run of the chapter's paragraphs. Quotes in the result must be verbatim
    passages of `chunk.text` (whitespace-normalised)."""

    provider: str
    model: str
    # Every token this analyzer's requests used so far, whatever came of them.
    spent: Usage

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        """Find up to `scenes` scenes and the elements present in `chunk`.

        Raises `imaginize.errors.ProviderError` when the chunk cannot be analysed.
        """
        ...

    def chunk_tokens(self, configured: int) -> int:
        """The most chapter text (in estimated tokens) one chunk should carry, given the
        configured figure: less when the provider has learned its server holds less."""
        ...

    def take_notices(self) -> list[str]:
        """Lines for the user the provider gathered since the last call (what it learned
        of its server, numbers it could not trust)."""
        ...
