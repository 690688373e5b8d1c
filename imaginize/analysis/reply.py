"""Turning a model's reply into an `Analysis`: find the JSON, validate it, check every quote.

Models wrap JSON in code fences or chatter, rename fields, and invent quotes. The schema is
checked with pydantic (precise messages for the repair request); quotes are searched for in
the chapter text with whitespace and typographic quotes normalised, and the passage as it
stands in the book is kept, so a guide never shows words the author did not write.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imaginize.model import Analysis, Element, ElementKind, Scene, Usage

_KIND_SYNONYMS = {
    "person": ElementKind.CHARACTER,
    "people": ElementKind.CHARACTER,
    "animal": ElementKind.CREATURE,
    "beast": ElementKind.CREATURE,
    "monster": ElementKind.CREATURE,
    "location": ElementKind.PLACE,
    "setting": ElementKind.PLACE,
    "object": ElementKind.ITEM,
    "thing": ElementKind.ITEM,
    "artifact": ElementKind.ITEM,
}
_FOLD = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-"}
)
# What a folded character of a quote stands for in the book. Python's \s is str.isspace(),
# the blanks str.split() splits on; possessive, since what follows a blank in a quote never is
# one, so there is nothing to give back and no backtracking through long runs of blanks.
_LOOSE = {" ": r"\s++", "'": "['\u2018\u2019]", '"': '["\u201c\u201d]', "-": "[-\u2013\u2014]"}

Text = Annotated[str, Field(default="")]


def _without_nulls(data: Any) -> Any:
    """Models write `"lighting": null` for a field they have nothing for: that is a missing
    field (its default), not a reason to send the whole reply back for repair."""
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


class ReplyError(ValueError):
    """The reply cannot be used; the message is fit to show the model in a repair request."""


class _Scene(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    quote: str = Field(min_length=1)
    description: Text
    composition: Text
    characters: list[str] = Field(default_factory=list)
    setting: Text
    lighting: Text
    mood: Text
    image_prompt: str = Field(default="", alias="imagePrompt")

    _nulls = model_validator(mode="before")(_without_nulls)


class _Element(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    kind: ElementKind
    description: Text
    aliases: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(default_factory=list)

    _nulls = model_validator(mode="before")(_without_nulls)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().casefold()
            known = {*_KIND_SYNONYMS, *ElementKind}
            if word not in known and word.endswith("s") and word[:-1] in known:
                word = word[:-1]  # "Places", "characters", "objects"
            return _KIND_SYNONYMS.get(word, word)
        return value


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    scenes: list[_Scene]
    elements: list[_Element] = Field(default_factory=list)


def extract_json_object(reply: str) -> dict[str, Any]:
    """The outermost JSON object in `reply`, wherever the model put it."""
    decoder = json.JSONDecoder()
    start = reply.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(reply, start)
        except json.JSONDecodeError:
            start = reply.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = reply.find("{", start + 1)
    raise ReplyError("the reply contains no complete JSON object")


class QuoteFinder:
    """Finds a quote in a chapter, ignoring differences of whitespace and quote marks."""

    def __init__(self, text: str) -> None:
        self._text = text

    def find(self, quote: str) -> str | None:
        """The passage as written in the book, or None when the quote is not in it."""
        needle = " ".join(quote.translate(_FOLD).split())
        needle = needle.strip(" \"'")
        if len(needle) < 3:
            return None
        # Searched for in the text as written, so that the match is the passage itself: no
        # folded copy of the chapter and no map back from it to build for every reply.
        pattern = "".join(_LOOSE.get(char) or re.escape(char) for char in needle)
        found = re.search(pattern, self._text)
        return found.group() if found else None


def parse_reply(reply: str, text: str, scenes_wanted: int, usage: Usage) -> Analysis:
    """Validate a reply against the schema and the chapter text."""
    data = extract_json_object(reply)
    try:
        parsed = _Reply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReplyError(f"field {where}: {first['msg']}") from exc
    finder = QuoteFinder(text)
    dropped = 0
    scenes: list[Scene] = []
    for item in parsed.scenes:
        quote = finder.find(item.quote)
        if quote is None:
            dropped += 1
            continue
        scenes.append(
            Scene(
                quote=quote,
                description=item.description.strip(),
                composition=item.composition.strip(),
                characters=tuple(c.strip() for c in item.characters if c.strip()),
                setting=item.setting.strip(),
                lighting=item.lighting.strip(),
                mood=item.mood.strip(),
                image_prompt=item.image_prompt.strip(),
            )
        )
    if scenes_wanted > 0 and not scenes:
        if dropped:
            raise ReplyError(
                f"none of the {dropped} quotes appears in the chapter text; copy them exactly"
            )
        raise ReplyError("the reply lists no scenes")
    elements: list[Element] = []
    for item in parsed.elements:
        if not item.name.strip():
            continue
        quotes = []
        for raw in item.quotes:
            found = finder.find(raw)
            if found is None:
                dropped += 1
            else:
                quotes.append(found)
        elements.append(
            Element(
                name=item.name.strip(),
                kind=item.kind,
                description=item.description.strip(),
                aliases=tuple(a.strip() for a in item.aliases if a.strip()),
                quotes=tuple(quotes),
            )
        )
    return Analysis(
        tuple(scenes[:scenes_wanted] if scenes_wanted else scenes), tuple(elements), usage, dropped
    )
