"""The request imaginize sends for one chapter (or chunk), and the repair request after a bad
reply. Kept apart from the client so the wording can be read and changed in one place."""

from __future__ import annotations

from imaginize.model import Chapter

SYSTEM = (
    "You are an illustration editor. You read a chapter of a book and choose the moments most "
    "worth illustrating, and you list the characters, creatures, places and items an artist "
    "must draw consistently. You answer with one JSON object and nothing else."
)

SCHEMA_HINT = """Reply with a JSON object of this shape:
{
  "scenes": [
    {
      "quote": "a passage copied EXACTLY, word for word, from the chapter (1-3 sentences)",
      "description": "what the picture shows",
      "composition": "framing and viewpoint, e.g. wide shot from the shore",
      "characters": ["names of the characters present"],
      "setting": "where it happens",
      "lighting": "light source, time of day, colours of the light",
      "mood": "the feeling of the moment",
      "imagePrompt": "one self-contained prompt for an image model"
    }
  ],
  "elements": [
    {
      "name": "the fullest name used in the text",
      "kind": "character | creature | place | item",
      "description": "appearance: what an artist needs to draw it consistently",
      "aliases": ["other names or titles used for it"],
      "quotes": ["a sentence copied EXACTLY from the chapter that describes it"]
    }
  ]
}"""


def chapter_messages(chunk: Chapter, scenes: int, book_title: str = "") -> list[dict[str, str]]:
    where = f' of "{book_title}"' if book_title else ""
    user = (
        f"Chapter {chunk.number}{where}: {chunk.title}\n\n"
        f"Choose exactly {scenes} scene{'s' if scenes != 1 else ''} spread across the chapter, "
        "in the order they happen, and list every named or important character, creature, "
        "place and item that appears. Quotes must be copied verbatim from the text below; "
        "never paraphrase, shorten with ellipses or invent them.\n\n"
        f"{SCHEMA_HINT}\n\n--- CHAPTER TEXT ---\n{chunk.text}\n--- END OF CHAPTER TEXT ---"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def repair_messages(
    messages: list[dict[str, str]], reply: str, problem: str
) -> list[dict[str, str]]:
    """The conversation again with the unusable reply and why. (A cut-off reply is not
    repaired: its chunk is asked for again in halves.)"""
    ask = (
        f"Your reply could not be used: {problem}. Reply again with only the JSON object "
        "described above. Copy quotes exactly from the chapter text."
    )
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": ask},
    ]
