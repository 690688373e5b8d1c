"""The shape of a chapter reply, in one place: the pydantic models that validate each scene
and element, and the JSON schema sent to servers that constrain their output to one.

The schema is generated from the models, so what a server is asked for and what imaginize
accepts cannot drift apart. Servers' structured-output modes (OpenAI's strict mode, vLLM,
llama.cpp's grammar) want every property required, no extra properties and no `$ref`s they
may not resolve, so the generated schema is made strict and self-contained.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from imaginize.model import ElementKind

SCHEMA_NAME = "chapter_illustrations"


def _at_most(length: int, items: int | None = None) -> Any:
    """Schema-only bounds (not validated): what a grammar holds a local model to, so that a
    small model's rambling ends in a complete reply rather than at the output cap."""
    bound: dict[str, int] = {"maxItems": items} if items else {"maxLength": length}
    return bound


_Short = Annotated[str, Field(json_schema_extra=_at_most(80))]
_Long = Annotated[str, Field(json_schema_extra=_at_most(400))]


class SceneReply(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    quote: str = Field(min_length=1, description="1-3 sentences copied exactly from the text")
    description: str = Field(
        default="", description="what the picture shows", json_schema_extra=_at_most(400)
    )
    composition: str = Field(
        default="", description="framing and viewpoint", json_schema_extra=_at_most(160)
    )
    characters: list[_Short] = Field(default_factory=list, json_schema_extra=_at_most(0, 8))
    setting: str = Field(default="", json_schema_extra=_at_most(160))
    lighting: str = Field(default="", json_schema_extra=_at_most(160))
    mood: str = Field(default="", json_schema_extra=_at_most(160))
    image_prompt: str = Field(default="", alias="imagePrompt", json_schema_extra=_at_most(600))


class ElementReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, json_schema_extra=_at_most(80))
    kind: ElementKind
    description: str = Field(
        default="",
        description="appearance, for drawing it consistently",
        json_schema_extra=_at_most(400),
    )
    aliases: list[_Short] = Field(default_factory=list, json_schema_extra=_at_most(0, 6))
    quotes: list[_Long] = Field(default_factory=list, json_schema_extra=_at_most(0, 3))


class ChapterReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # At least one: a grammar-constrained small model otherwise fills the schema with nothing
    # (llama-cpp-python + Gemma 3 270M answered {"scenes": [], "elements": []}).
    scenes: list[SceneReply] = Field(min_length=1)
    elements: list[ElementReply] = Field(default_factory=list, json_schema_extra=_at_most(0, 16))


@functools.cache
def _strict_schema(bounds: bool) -> dict[str, Any]:
    schema = ChapterReply.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})
    return _strict(_inline(schema, definitions), _KEPT_BOUNDS if bounds else frozenset())


def reply_schema(
    *, string_bounds: bool = False, quotes: Sequence[str] = (), scenes: int = 0
) -> dict[str, Any]:
    """The strict JSON schema of a chapter reply (a fresh copy: callers may embed it).
    `string_bounds`: keep the length and count bounds, which grammar-based servers
    (llama.cpp) enforce and OpenAI's strict mode may refuse. `quotes`: the only values a
    scene's quote may take (see `quote_choices`), and `scenes` the most scenes, for a local
    server's grammar (bounds are then kept)."""
    schema = _fresh(_strict_schema(string_bounds or bool(quotes)))
    listed = schema["properties"]["scenes"]
    if quotes:
        quote = listed["items"]["properties"]["quote"]
        quote["enum"] = list(quotes)
        quote.pop("minLength", None)
        # An element's quotes too: a small model's own words there are dropped one by one.
        told = schema["properties"]["elements"]["items"]["properties"]["quotes"]["items"]
        told["enum"] = list(quotes)
        told.pop("maxLength", None)
    if scenes and (string_bounds or quotes):
        listed["maxItems"] = max(scenes, listed.get("minItems", 1))
    return schema


def _fresh(node: Any) -> Any:
    """A copy of a JSON value (dicts, lists, scalars): what copy.deepcopy makes, in a
    third of its time (one is made for every request)."""
    if isinstance(node, dict):
        return {key: _fresh(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_fresh(value) for value in node]
    return node


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node


_DROPPED = frozenset({"default", "title", "minLength", "maxLength", "maxItems"})
_KEPT_BOUNDS = frozenset({"minLength", "maxLength", "maxItems"})


def _strict(node: Any, keep: frozenset[str] = frozenset()) -> Any:
    """Every object closed and all its properties required; no defaults, titles or length
    bounds, which strict modes reject or ignore (validation still checks the bounds)."""
    if isinstance(node, list):
        return [_strict(value, keep) for value in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v, keep) for k, v in node.items() if k not in _DROPPED - keep}
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out
