"""Turning a model's reply into an `Analysis`: find the answer, read it leniently, check quotes.

Real models wrap JSON in code fences or chatter, think aloud in `<think>` blocks first, rename
fields (`type` for `kind`, `prompt` for `imagePrompt`), write quotes as objects and nulls for
fields they have nothing for, and invent quotes. The answer is found after any reasoning,
each scene and element is read on its own (an unusable one is dropped and counted, never the
chapter), and every quote is searched for in the chapter text with whitespace and typographic
quotes normalised, so a guide never shows words the author did not write.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from imaginize.analysis.openai.reply_schema import ElementReply, SceneReply
from imaginize.model import Analysis, Element, ElementKind, Scene, Usage


class ReplyError(ValueError):
    """The reply cannot be used; the message is fit to show the model in a repair request."""


# --- finding the answer ----------------------------------------------------------------------

_TAGS = "think|thinking|reasoning|reflection"
_REASONING = re.compile(rf"<({_TAGS})\b[^>]*>.*?</\1\s*>", re.S | re.I)
_OPEN = re.compile(rf"<(?:{_TAGS})\b[^>]*>", re.I)
_CLOSE = re.compile(rf"</(?:{_TAGS})\s*>", re.I)


def strip_reasoning(reply: str) -> str:
    """The reply without a reasoning model's thinking, where a brace is never the answer."""
    text = _REASONING.sub(" ", reply)
    # Some chat templates open the block in the prompt: only its end is in the reply.
    closes = list(_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    # Opened and never closed: the reply stopped while still thinking.
    opened = _OPEN.search(text)
    return text[: opened.start()] if opened else text


def _json_values(text: str) -> Iterator[Any]:
    """Every JSON object or array in `text` that is not inside an earlier one."""
    decoder = json.JSONDecoder()
    start = _next_open(text, 0)
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = _next_open(text, start + 1)
            continue
        yield value
        start = _next_open(text, end)


def _next_open(text: str, start: int) -> int:
    found = [i for i in (text.find("{", start), text.find("[", start)) if i != -1]
    return min(found) if found else -1


def find_answer(reply: str) -> dict[str, Any]:
    """The JSON object that answers, wherever the model put it: the first one with a scenes
    list (as such, or inside a one-key wrapper), else a bare list of scenes, else the first
    object (whose missing scenes the repair request then names)."""
    values = list(_json_values(strip_reasoning(reply)))
    for value in values:
        if isinstance(value, dict) and _unwrapped(value) is not None:
            return _unwrapped(value) or value
    for value in values:
        if isinstance(value, list) and _looks_like_scenes(value):
            return {"scenes": value}
    for value in values:
        if isinstance(value, dict):
            return value
    raise ReplyError("the reply contains no complete JSON object")


def _looks_like_scenes(values: list[Any]) -> bool:
    return all(isinstance(v, dict) for v in values) and any(
        _lookup(v, _SCENE_FIELDS["quote"]) is not None for v in values
    )


def extract_json_object(reply: str) -> dict[str, Any]:
    """The first complete JSON object of `reply` after any reasoning block."""
    for value in _json_values(strip_reasoning(reply)):
        if isinstance(value, dict):
            return value
    raise ReplyError("the reply contains no complete JSON object")


def _unwrapped(value: dict[str, Any]) -> dict[str, Any] | None:
    """`value` if it has scenes, or the object it wraps (`{"result": {...}}`) if that has."""
    if _lookup(value, _TOP_SCENES) is not None:
        return value
    if len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, dict) and _lookup(inner, _TOP_SCENES) is not None:
            return inner
    return None


# --- reading scenes and elements leniently ---------------------------------------------------


def _key(name: Any) -> str:
    """`imagePrompt`, `image_prompt`, `Image Prompt` and `IMAGE-PROMPT` are one key."""
    return re.sub(r"[\W_]+", "", str(name)).casefold()


def _names(*words: str) -> tuple[str, ...]:
    return tuple(_key(w) for w in words)


_TOP_SCENES = _names("scenes", "scene", "moments", "illustrations", "key_scenes")
_TOP_ELEMENTS = _names("elements", "entities", "cast", "story_elements")
_SCENE_FIELDS = {
    "quote": _names("quote", "text", "passage", "excerpt", "quotation", "source_quote"),
    "description": _names("description", "visual_description", "desc", "summary"),
    "composition": _names("composition", "framing", "shot", "camera"),
    "characters": _names("characters", "characters_present", "people"),
    "setting": _names("setting", "location", "place"),
    "lighting": _names("lighting", "light"),
    "mood": _names("mood", "atmosphere", "tone"),
    "imagePrompt": _names("image_prompt", "prompt", "image_description", "image"),
}
_ELEMENT_FIELDS = {
    "name": _names("name", "title", "element"),
    "kind": _names("kind", "type", "category", "element_type"),
    "description": _names("description", "appearance", "visual_description", "desc"),
    "aliases": _names("aliases", "alias", "other_names", "nicknames", "aka"),
    "quotes": _names("quotes", "quote", "reference_quotes", "evidence"),
}
_KINDS: dict[str, ElementKind] = {
    **{word: ElementKind.CHARACTER for word in _names("person", "people", "human", "npc")},
    **{word: ElementKind.CREATURE for word in _names("animal", "beast", "monster", "being")},
    **{
        word: ElementKind.PLACE
        for word in _names("location", "setting", "building", "room", "city", "landscape")
    },
    **{
        word: ElementKind.ITEM
        for word in _names("object", "thing", "artifact", "artefact", "prop", "weapon", "tool")
    },
    **{kind.value: kind for kind in ElementKind},
}
# Elements grouped by kind at the top level or inside "elements": {"characters": [...]}.
_GROUPS: dict[str, ElementKind] = {
    **{word: ElementKind.CHARACTER for word in _names("characters", "people")},
    **{word: ElementKind.CREATURE for word in _names("creatures", "animals")},
    **{word: ElementKind.PLACE for word in _names("places", "locations", "settings")},
    **{word: ElementKind.ITEM for word in _names("items", "objects")},
}
_TEXT_KEYS = _names("text", "quote", "value", "content", "name")


def _lookup(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of `keys` present and not null (keys compared as `_key`)."""
    found = {_key(name): value for name, value in reversed(data.items())}
    for key in keys:
        if found.get(key) is not None:
            return found[key]
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return _text(_lookup(value, _TEXT_KEYS))
    if isinstance(value, list):
        return "; ".join(t for t in (_text(v).strip() for v in value) if t)
    return ""


def _first_text(value: Any) -> str:
    """One passage: the first of a list of them."""
    if isinstance(value, list):
        return next((t for t in (_text(v) for v in value) if t.strip()), "")
    return _text(value)


def _list(value: Any, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = re.split(r"[;,]", value) if split else [value]
        return [p.strip() for p in parts if p.strip()]
    items = value if isinstance(value, list) else [value]
    return [t for t in (_text(item).strip() for item in items) if t]


def _kind(value: Any) -> str | None:
    word = _key(_text(value))
    if word not in _KINDS and word.endswith("s") and word[:-1] in _KINDS:
        word = word[:-1]  # "Places", "characters", "objects"
    kind = _KINDS.get(word)
    return kind.value if kind else None


def _scene_fields(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"quote": raw}
    if not isinstance(raw, dict):
        return {}
    fields = {name: _lookup(raw, keys) for name, keys in _SCENE_FIELDS.items()}
    out: dict[str, Any] = {
        name: _text(value) for name, value in fields.items() if name not in ("quote", "characters")
    }
    out["quote"] = _first_text(fields["quote"])
    out["characters"] = _list(fields["characters"], split=True)
    return out


def _element_fields(raw: Any, kind: ElementKind | None) -> dict[str, Any]:
    if isinstance(raw, str):
        return {"name": raw, "kind": kind.value if kind else None}
    if not isinstance(raw, dict):
        return {}
    fields = {name: _lookup(raw, keys) for name, keys in _ELEMENT_FIELDS.items()}
    return {
        "name": _text(fields["name"]).strip(),
        "kind": _kind(fields["kind"]) or (kind.value if kind else fields["kind"]),
        "description": _text(fields["description"]),
        "aliases": _list(fields["aliases"], split=True),
        "quotes": _list(fields["quotes"], split=False),
    }


def _raw_elements(answer: dict[str, Any]) -> Iterator[tuple[Any, ElementKind | None]]:
    listed = _lookup(answer, _TOP_ELEMENTS)
    groups: list[tuple[Any, ElementKind | None]] = []
    if isinstance(listed, list):
        groups.append((listed, None))
    elif isinstance(listed, dict):
        groups += [(v, _GROUPS.get(_key(k))) for k, v in listed.items() if _key(k) in _GROUPS]
    groups += [(v, _GROUPS[_key(k)]) for k, v in answer.items() if _key(k) in _GROUPS]
    for items, kind in groups:
        for item in items if isinstance(items, list) else [items]:
            yield item, kind


M = TypeVar("M", bound=BaseModel)


def _valid(model: type[M], fields: dict[str, Any]) -> M | None:
    try:
        return model.model_validate(fields)
    except ValidationError:
        return None


# --- quotes --------------------------------------------------------------------------------

_FOLD = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-"}
)
# What a folded character of a quote stands for in the book. Python's \s is str.isspace(),
# the blanks str.split() splits on; possessive, since what follows a blank in a quote never is
# one, so there is nothing to give back and no backtracking through long runs of blanks.
_LOOSE = {" ": r"\s++", "'": "['\u2018\u2019]", '"': '["\u201c\u201d]', "-": "[-\u2013\u2014]"}


# A folded needle in parts: a character of _LOOSE, or a run of the others (taken literally).
_PARTS = re.compile(r"[ '\"-]|[^ '\"-]+")
_MARKS = {"'": "'\u2018\u2019", '"': '"\u201c\u201d', "-": "-\u2013\u2014"}


def _loose_end(parts: list[str], text: str, at: int) -> int | None:
    """Where the needle of `parts` ends when it matches `text` from `at` as its _LOOSE
    pattern would (a blank: one or more, all of them taken), else None."""
    size = len(text)
    for part in parts:
        if part == " ":
            if at >= size or not text[at].isspace():
                return None
            at += 1
            while at < size and text[at].isspace():
                at += 1
        elif part in _MARKS:
            if at >= size or text[at] not in _MARKS[part]:
                return None
            at += 1
        elif text.startswith(part, at):
            at += len(part)
        else:
            return None
    return at


# A near quote is taken for the passage it resembles when the two agree this closely
# (difflib's ratio over their folded words); measured by benchmarks/quote_matching.py.
NEAR_RATIO = 0.72
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026\u3002\uff01\uff1f])[\"'\u201d\u2019)\]]*\s+|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`; a blank line ends one too."""
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if text[a:b].strip()]


class QuoteFinder:
    """Finds a quote in a chapter, ignoring differences of whitespace and quote marks, and
    (`closest`) the passage a quote not copied exactly stands for."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._sentences: list[tuple[int, int, tuple[str, ...]]] | None = None

    def closest(self, quote: str) -> str | None:
        """The run of whole sentences of the chapter that `quote` paraphrases (a word changed,
        dropped or added, an ellipsis, other punctuation), as the book writes it; None when
        no passage is close enough. Exact quotes are `find`'s job."""
        words = tuple(_WORD.findall(quote.casefold()))
        if len(words) < 3:
            return None
        wanted = set(words)
        sentences = self._sentence_spans()
        # The quote's length in sentences, give or take one.
        count = max(1, len(_SENTENCE_END.findall(quote.strip())) + 1)
        scored: list[tuple[float, int, int]] = []
        for size in range(max(1, count - 1), count + 2):
            for first in range(0, max(0, len(sentences) - size + 1)):
                span = sentences[first : first + size]
                found = {w for _, _, ws in span for w in ws}
                shared = len(wanted & found)
                if shared:
                    scored.append((2 * shared / (len(wanted) + len(found)), first, size))
        best: tuple[float, str] | None = None
        for _, first, size in sorted(scored, reverse=True)[:5]:
            span = sentences[first : first + size]
            ratio = difflib.SequenceMatcher(
                None, words, tuple(w for _, _, ws in span for w in ws), autojunk=False
            ).ratio()
            if ratio >= NEAR_RATIO and (best is None or ratio > best[0]):
                best = (ratio, self._text[span[0][0] : span[-1][1]].strip())
        return best[1] if best else None

    def _sentence_spans(self) -> list[tuple[int, int, tuple[str, ...]]]:
        if self._sentences is None:
            self._sentences = [
                (a, b, tuple(_WORD.findall(self._text[a:b].casefold())))
                for a, b in sentence_spans(self._text)
            ]
        return self._sentences

    def find(self, quote: str) -> str | None:
        """The passage as written in the book, or None when the quote is not in it."""
        needle = " ".join(quote.translate(_FOLD).split())
        needle = needle.strip(" \"'")
        if len(needle) < 3:
            return None
        # Searched for in the text as written, so that the match is the passage itself: no
        # folded copy of the chapter and no map back from it to build for every reply.
        parts = _PARTS.findall(needle)
        if parts[0] in _LOOSE:
            pattern = "".join(_LOOSE.get(char) or re.escape(char) for char in needle)
            found = re.search(pattern, self._text)
            return found.group() if found else None
        # What that pattern matches, without compiling one for every quote (a millisecond
        # each, most of the time parsing a reply took): it can only start where its first
        # words are, and from there it has one way to go (single characters, possessive
        # blanks), so the first start that matches all the way is re.search's match.
        text = self._text
        at = text.find(parts[0])
        while at >= 0:
            end = _loose_end(parts, text, at)
            if end is not None:
                return text[at:end]
            at = text.find(parts[0], at + 1)
        return None


# --- the whole reply -----------------------------------------------------------------------


def parse_reply(reply: str, text: str, scenes_wanted: int, usage: Usage) -> Analysis:
    """Read a reply against the schema and the chapter text. Unusable scenes and elements are
    dropped and counted; the reply fails only when no usable scene is left of those wanted."""
    answer = find_answer(reply)
    raw_scenes = _lookup(answer, _TOP_SCENES)
    if raw_scenes is None:
        raise ReplyError('the JSON object has no "scenes" list')
    finder = QuoteFinder(text)
    scenes, invented, invalid, corrected = _scenes(raw_scenes, finder)
    if scenes_wanted > 0 and not scenes:
        if invented:
            raise ReplyError(
                f"none of the {invented} quotes appears in the chapter text; copy them exactly"
            )
        if invalid:
            raise ReplyError(f"none of the {invalid} scenes has a quote from the chapter")
        raise ReplyError("the reply lists no scenes")
    elements, more_invented, more_invalid, more_corrected = _elements(_raw_elements(answer), finder)
    return Analysis(
        tuple(scenes[:scenes_wanted] if scenes_wanted else scenes),
        tuple(elements),
        usage,
        dropped_quotes=invented + more_invented,
        dropped_items=invalid + more_invalid,
        corrected_quotes=corrected + more_corrected,
    )


def _book_words(finder: QuoteFinder, quote: str) -> tuple[str | None, bool]:
    """The passage as the book writes it, and whether the quote had to be corrected to it."""
    found = finder.find(quote)
    if found is not None:
        return found, False
    near = finder.closest(quote)
    return near, near is not None


def _scenes(raw: Any, finder: QuoteFinder) -> tuple[list[Scene], int, int, int]:
    scenes: list[Scene] = []
    invented = invalid = corrected = 0
    for item in raw if isinstance(raw, list) else [raw]:
        parsed = _valid(SceneReply, _scene_fields(item))
        if parsed is None or not parsed.quote.strip():
            invalid += 1
            continue
        quote, near = _book_words(finder, parsed.quote)
        if quote is None:
            invented += 1
            continue
        corrected += near
        scenes.append(
            Scene(
                quote=quote,
                description=parsed.description.strip(),
                composition=parsed.composition.strip(),
                characters=tuple(c.strip() for c in parsed.characters if c.strip()),
                setting=parsed.setting.strip(),
                lighting=parsed.lighting.strip(),
                mood=parsed.mood.strip(),
                image_prompt=parsed.image_prompt.strip(),
            )
        )
    return scenes, invented, invalid, corrected


def _elements(
    raw: Iterable[tuple[Any, ElementKind | None]], finder: QuoteFinder
) -> tuple[list[Element], int, int, int]:
    elements: list[Element] = []
    invented = invalid = corrected = 0
    for item, kind in raw:
        parsed = _valid(ElementReply, _element_fields(item, kind))
        if parsed is None or not parsed.name.strip():
            invalid += 1
            continue
        quotes = []
        for passage in parsed.quotes:
            found, near = _book_words(finder, passage)
            if found is None:
                invented += 1
            else:
                corrected += near
                quotes.append(found)
        elements.append(
            Element(
                name=parsed.name.strip(),
                kind=parsed.kind,
                description=parsed.description.strip(),
                aliases=tuple(a.strip() for a in parsed.aliases if a.strip()),
                quotes=tuple(quotes),
            )
        )
    return elements, invented, invalid, corrected
