"""One chapter in, one `ChapterResult` out: chunk, analyse each chunk, join the parts."""

from __future__ import annotations

from imaginize import cancel
from imaginize.analysis.base import Analyzer
from imaginize.guides.merge import normalise_name
from imaginize.model import Chapter, ChapterResult, Element, Usage
from imaginize.reading.chunking import scene_count, share_scenes, split_chapter
from imaginize.settings import DEFAULT_MAX_CHUNK_TOKENS, DEFAULT_PAGES_PER_IMAGE


def analyze_chapter(
    chapter: Chapter,
    analyzer: Analyzer,
    *,
    pages_per_image: float = DEFAULT_PAGES_PER_IMAGE,
    max_chunk_tokens: int = DEFAULT_MAX_CHUNK_TOKENS,
) -> ChapterResult:
    chunks = split_chapter(chapter, analyzer.chunk_tokens(max_chunk_tokens))
    shares = share_scenes(scene_count(chapter.text, pages_per_image), chunks)
    scenes = []
    elements: list[Element] = []
    usage = Usage()
    dropped = dropped_items = corrected = 0
    for chunk, wanted in zip(chunks, shares, strict=True):
        cancel.check()
        part = analyzer.analyze(chunk, wanted)
        scenes.extend(part.scenes)
        elements.extend(part.elements)
        usage += part.usage
        dropped += part.dropped_quotes
        dropped_items += part.dropped_items
        corrected += part.corrected_quotes
    return ChapterResult(
        chapter=chapter.number,
        title=chapter.title,
        words=chapter.word_count,
        provider=analyzer.provider,
        model=analyzer.model,
        scenes=tuple(scenes),
        elements=tuple(_dedupe(elements)),
        usage=usage,
        dropped_quotes=dropped,
        dropped_items=dropped_items,
        corrected_quotes=corrected,
    )


def _dedupe(elements: list[Element]) -> list[Element]:
    """A chunked chapter names its people once per chunk; keep one, with the richest text."""
    kept: dict[str, Element] = {}
    for element in elements:
        key = normalise_name(element.name)
        old = kept.get(key)
        if old is None:
            kept[key] = element
            continue
        aliases = tuple(dict.fromkeys(old.aliases + element.aliases))
        quotes = tuple(dict.fromkeys(old.quotes + element.quotes))
        best = element.description if len(element.description) > len(old.description) else None
        kept[key] = Element(old.name, old.kind, best or old.description, aliases, quotes)
    return list(kept.values())
