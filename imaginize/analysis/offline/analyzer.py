"""The built-in offline analyzer: useful illustration guides with no API key and no network.

Heuristic and deterministic. Given the whole book it first builds a catalogue of recurring
names (characters, creatures, places, items) with aliases and visual descriptions gathered
from every chapter (see `catalogue`); each chunk is then analysed on its own against that
catalogue: scenes are its most visual passages (see `scenes`), elements the catalogue entries
it mentions, with reference quotes taken from the chunk itself.

That analysis reads English. A book in another language (see `languages`) gets scenes by
paragraph instead, with prompts from the quote and names for elements (see `paragraphs`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from imaginize.analysis.offline import cache, languages, paragraphs
from imaginize.analysis.offline.catalogue import Catalogue, chunk_elements
from imaginize.analysis.offline.era import book_era
from imaginize.analysis.offline.scenes import (
    SceneBuilder,
    candidate_windows,
    pick_windows,
    sentence_features,
)
from imaginize.analysis.offline.text import split_text, split_texts
from imaginize.model import Analysis, Book, Chapter, Usage

MAX_ELEMENTS = 30


class OfflineAnalyzer:
    """An `Analyzer` that needs nothing but the text.

    With `book`, names and descriptions come from the whole book (built on first use, once);
    without it, each chunk is its own little book. With `cache_dir` (the output folder), the
    catalogue is shared through a file there by every worker and run on the book (`cache`).
    """

    provider = "offline"
    model = "heuristic-1"
    spent = Usage()

    def __init__(
        self,
        book: Book | None = None,
        *,
        max_elements: int = MAX_ELEMENTS,
        cache_dir: Path | None = None,
    ) -> None:
        self._book = book
        self._cache_dir = cache_dir
        self._max_elements = max_elements
        self._catalogue: Catalogue | None = None
        self._era: str | None = None
        self._names: paragraphs.Names | None = None
        self._language: str | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Build the book-wide catalogue now. Workers call this before they claim a chapter:
        built lazily, inside the first chapter's analysis, it would count against that
        chapter's time limit (minutes on a huge book) while the chapter is held."""
        if self.language is None or languages.is_english(self.language):
            _ = self.catalogue
            _ = self.era  # a scan of the whole text too: not inside a held chapter
        else:
            _ = self.names

    @property
    def language(self) -> str | None:
        """The book's language as the analysis treats it (`languages.book_language`), or
        None when no book was given (then each chunk is judged by its own text)."""
        if self._book is None:
            return None
        if self._language is None:
            texts = [c.text for c in self._book.chapters]
            self._language = languages.book_language(self._book.language, texts)
        return self._language

    @property
    def names(self) -> paragraphs.Names | None:
        """The book-wide names for a book not in English, or None when no book was given."""
        if self._book is None:
            return None
        with self._lock:
            if self._names is None:
                chapters = split_texts(c.text for c in self._book.chapters)
                self._names = paragraphs.Names([s for own in chapters for s in own])
            return self._names

    @property
    def catalogue(self) -> Catalogue | None:
        """The book-wide catalogue, or None when no book was given."""
        if self._book is None:
            return None
        with self._lock:
            if self._catalogue is None:
                texts = [c.text for c in self._book.chapters]
                self._catalogue = cache.book_catalogue(texts, self._cache_dir)
            return self._catalogue

    @property
    def era(self) -> str:
        """The period the book is set in, from the dates it writes (`era.book_era`), for
        image prompts; "" without a book or when its dates do not say."""
        if self._book is None:
            return ""
        with self._lock:
            if self._era is None:
                self._era = book_era(c.text for c in self._book.chapters)
            return self._era

    def chunk_tokens(self, configured: int) -> int:
        return configured

    def take_notices(self) -> list[str]:
        return []

    def analyze(self, chunk: Chapter, scenes: int) -> Analysis:
        if not chunk.text.strip():
            return Analysis(scenes=(), elements=())
        language = self.language or languages.guess(chunk.text)
        if not languages.is_english(language):
            sentences = split_text(chunk.text)
            names = self.names or paragraphs.Names(sentences)
            return paragraphs.analyze(sentences, scenes, names, self._max_elements)
        catalogue = self.catalogue or Catalogue([chunk.text])
        sentences = catalogue.sentences(chunk.text)
        if not sentences:
            return Analysis(scenes=(), elements=())
        hits = catalogue.find(sentences)
        per_sentence: list[list[int]] = [[] for _ in sentences]
        for h in hits:
            # "I" is everywhere in a first-person story: it makes no passage more visual.
            if h.entry != catalogue.narrator:
                per_sentence[h.sentence].append(h.entry)
        feats = sentence_features(sentences)
        windows = candidate_windows(sentences, feats, per_sentence)
        chosen = pick_windows(windows, max(scenes, 0), len(sentences))
        builder = SceneBuilder(sentences, feats, hits, catalogue, self.era)
        return Analysis(
            scenes=tuple(builder.build(w) for w in chosen),
            elements=tuple(chunk_elements(catalogue, sentences, hits, self._max_elements)),
        )
