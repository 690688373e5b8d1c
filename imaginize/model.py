"""The records that flow through imaginize: a parsed book and one chapter's analysis.

A `Chapter` is the unit of work: everything needed to analyse it is inside it, and its
analysis is one `ChapterResult`, stored as one file. JSON field names are camelCase, the
same convention as the manifest (see manifest-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Chapter:
    """One story chapter: 1-based number after front matter is dropped, title, plain text.

    `text` holds paragraphs separated by a blank line ("\\n\\n"); quotes are taken from it.
    `source` says where in the EPUB it came from (href, optionally #fragment) for messages.
    """

    number: int
    title: str
    text: str
    source: str = ""

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.text.split("\n\n") if p.strip()]


@dataclass(frozen=True)
class Book:
    path: Path
    title: str
    author: str
    language: str
    chapters: tuple[Chapter, ...]
    # Recoverable problems met while reading (missing resources, broken nav, ...).
    warnings: tuple[str, ...] = ()


class ElementKind(StrEnum):
    CHARACTER = "character"
    CREATURE = "creature"
    PLACE = "place"
    ITEM = "item"


@dataclass(frozen=True)
class Scene:
    """A moment worth illustrating, anchored by a verbatim quote from the chapter."""

    quote: str
    description: str
    composition: str = ""
    characters: tuple[str, ...] = ()
    setting: str = ""
    lighting: str = ""
    mood: str = ""
    image_prompt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "quote": self.quote,
            "description": self.description,
            "composition": self.composition,
            "characters": list(self.characters),
            "setting": self.setting,
            "lighting": self.lighting,
            "mood": self.mood,
            "imagePrompt": self.image_prompt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scene:
        return cls(
            quote=str(data["quote"]),
            description=str(data.get("description", "")),
            composition=str(data.get("composition", "")),
            characters=tuple(str(c) for c in data.get("characters", ())),
            setting=str(data.get("setting", "")),
            lighting=str(data.get("lighting", "")),
            mood=str(data.get("mood", "")),
            image_prompt=str(data.get("imagePrompt", "")),
        )


@dataclass(frozen=True)
class Element:
    """A character, creature, place or item as seen in one chapter."""

    name: str
    kind: ElementKind
    description: str = ""
    aliases: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "description": self.description,
            "aliases": list(self.aliases),
            "quotes": list(self.quotes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Element:
        return cls(
            name=str(data["name"]),
            kind=ElementKind(data["kind"]),
            description=str(data.get("description", "")),
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            quotes=tuple(str(q) for q in data.get("quotes", ())),
        )


@dataclass(frozen=True)
class Usage:
    """Token counts as reported by the API (zero for the offline analyzer)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            max(0, self.prompt_tokens - other.prompt_tokens),
            max(0, self.completion_tokens - other.completion_tokens),
        )

    def to_json(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Usage:
        return cls(int(data.get("promptTokens", 0)), int(data.get("completionTokens", 0)))


@dataclass(frozen=True)
class Analysis:
    """What a provider returns for one chapter (or one chunk of it)."""

    scenes: tuple[Scene, ...]
    elements: tuple[Element, ...]
    usage: Usage = field(default_factory=Usage)
    # Quotes the model returned that are not in the chapter text; they were dropped.
    dropped_quotes: int = 0
    # Scenes and elements of the reply that could not be used (no quote, no name, unknown
    # kind); they were dropped.
    dropped_items: int = 0
    # Quotes not copied exactly, replaced by the passage of the book they stand for.
    corrected_quotes: int = 0


RESULT_FORMAT = 1


@dataclass(frozen=True)
class ImageRecord:
    """A generated illustration of one scene: where it is and how it was asked for."""

    scene: int  # 1-based index into the chapter's scenes
    file: str  # relative to the output folder, e.g. images/chapter_003_scene_2.png
    prompt: str
    model: str
    size: str

    def to_json(self) -> dict[str, Any]:
        return {
            "scene": self.scene,
            "file": self.file,
            "prompt": self.prompt,
            "model": self.model,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(
            scene=int(data["scene"]),
            file=str(data["file"]),
            prompt=str(data.get("prompt", "")),
            model=str(data.get("model", "")),
            size=str(data.get("size", "")),
        )


@dataclass(frozen=True)
class ChapterResult:
    """The finished analysis of one chapter: the content of chapters/NNN.json."""

    chapter: int
    title: str
    words: int
    provider: str
    model: str
    scenes: tuple[Scene, ...]
    elements: tuple[Element, ...]
    usage: Usage = field(default_factory=Usage)
    dropped_quotes: int = 0
    dropped_items: int = 0
    corrected_quotes: int = 0
    # Illustrations made so far (--images), in scene order.
    images: tuple[ImageRecord, ...] = ()
    # sha256 of the EPUB the chapter was analysed from, so that a result left in a folder is
    # never taken for another book's. Empty: unknown (a file of an older imaginize).
    book_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": RESULT_FORMAT}
        if self.book_sha256:
            data["bookSha256"] = self.book_sha256
        data |= {
            "chapter": self.chapter,
            "title": self.title,
            "words": self.words,
            "provider": self.provider,
            "model": self.model,
            "usage": self.usage.to_json(),
            "droppedQuotes": self.dropped_quotes,
            "scenes": [s.to_json() for s in self.scenes],
            "elements": [e.to_json() for e in self.elements],
        }
        if self.dropped_items:
            data["droppedItems"] = self.dropped_items
        if self.corrected_quotes:
            data["correctedQuotes"] = self.corrected_quotes
        if self.images:
            data["images"] = [i.to_json() for i in self.images]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChapterResult:
        if data.get("format") != RESULT_FORMAT:
            raise ValueError(f"unsupported result format {data.get('format')!r}")
        book_sha256 = data.get("bookSha256") or ""
        if not isinstance(book_sha256, str):
            raise ValueError(f"bookSha256 is not a string: {book_sha256!r}")
        return cls(
            chapter=int(data["chapter"]),
            title=str(data["title"]),
            words=int(data.get("words", 0)),
            provider=str(data["provider"]),
            model=str(data["model"]),
            scenes=tuple(Scene.from_json(s) for s in data["scenes"]),
            elements=tuple(Element.from_json(e) for e in data["elements"]),
            usage=Usage.from_json(data.get("usage", {})),
            dropped_quotes=int(data.get("droppedQuotes", 0)),
            dropped_items=int(data.get("droppedItems", 0)),
            corrected_quotes=int(data.get("correctedQuotes", 0)),
            images=tuple(ImageRecord.from_json(i) for i in data.get("images", ())),
            book_sha256=book_sha256,
        )
