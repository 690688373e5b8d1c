"""A well-behaved model for the fake server: answers a chapter request with valid JSON whose
quotes are real sentences of the chapter text in the prompt. Usable in-process (`responder=`)
and in subprocess scripts ("tests.replies:answer")."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tests.fake_openai import prompt_text

_CHAPTER = re.compile(r"--- CHAPTER TEXT ---\n(.*?)\n--- END OF CHAPTER TEXT ---", re.S)
_WANTED = re.compile(r"Choose exactly (\d+) scene")
_SENTENCE = re.compile(r"[^.!?]{20,}?[.!?]")


def chapter_text(body: Mapping[str, Any] | None) -> str:
    match = _CHAPTER.search(prompt_text(body))
    return match.group(1) if match else ""


def reply_json(body: Mapping[str, Any] | None) -> str:
    text = chapter_text(body)
    wanted_match = _WANTED.search(prompt_text(body))
    wanted = int(wanted_match.group(1)) if wanted_match else 1
    sentences = [s.strip() for s in _SENTENCE.findall(text)] or [text.strip()[:80]]
    scenes = [
        {
            "quote": sentence,
            "description": f"An illustration of: {sentence[:60]}",
            "composition": "wide shot",
            "characters": ["Wren Ashby"],
            "setting": "the orchard",
            "lighting": "lantern light",
            "mood": "hushed",
            "imagePrompt": f"storybook painting, {sentence[:80]}",
        }
        for sentence in sentences[:wanted]
    ]
    elements = [
        {
            "name": "Wren Ashby",
            "kind": "character",
            "description": "a girl in a mustard-yellow oilskin",
            "aliases": ["Wren"],
            "quotes": [sentences[0]],
        }
    ]
    return json.dumps({"scenes": scenes, "elements": elements})


def answer(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"kind": "reply", "content": reply_json(body)}


def schema_bound(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """A small local model (as Gemma 3 270M behind llama.cpp): without a schema to follow it
    answers with any JSON object it likes; constrained by one, it fills the schema."""
    wanted = (body or {}).get("response_format") or {}
    if wanted.get("type") == "json_schema" or "schema" in wanted:
        return answer(body)
    return {"kind": "reply", "content": json.dumps({"name": "model", "items": ["a", "b"]})}


def paraphrasing(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """A weaker model: its quotes are near the text, not in it (a word dropped, the case and
    the final stop changed), as small local models write them."""
    answer = json.loads(reply_json(body))
    for scene in answer["scenes"]:
        words = scene["quote"].rstrip(".!?").split()
        del words[len(words) // 2]
        scene["quote"] = " ".join(words).lower()
    return {"kind": "reply", "content": json.dumps(answer)}


def inventing(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """A base model too small to copy (Gemma 3 270M): its quotes are its own words, unless
    the schema lists the quotes it may give, which a grammar-constrained server then keeps
    it to (it takes the choices spread over the list)."""
    answer = json.loads(reply_json(body))
    wanted = (body or {}).get("response_format") or {}
    schema = (wanted.get("json_schema") or {}).get("schema") or wanted.get("schema") or {}
    quote = schema.get("properties", {}).get("scenes", {}).get("items", {})
    choices = quote.get("properties", {}).get("quote", {}).get("enum") or []
    for n, scene in enumerate(answer["scenes"]):
        if choices:
            scene["quote"] = choices[(n * 7 + 3) % len(choices)]
        else:
            scene["quote"] = f"The model imagined moment number {n} in a garden of glass."
    return {"kind": "reply", "content": json.dumps(answer)}
