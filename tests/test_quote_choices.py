"""Quotes a small model can only copy: the chunk's sentences as the schema's enum, sent to
local servers whose grammar keeps the model to them (over real HTTP against the fake server,
whose `inventing` model writes its own quotes unless the schema lists them)."""

from __future__ import annotations

import pytest

from imaginize.analysis.openai.chat import OpenAIAnalyzer
from imaginize.analysis.openai.quote_choices import (
    MAX_CHOICES,
    MAX_TOTAL_CHARS,
    MIN_CHARS,
    quote_choices,
)
from imaginize.analysis.openai.reply import QuoteFinder
from imaginize.analysis.openai.reply_schema import reply_schema
from imaginize.analysis.providers import ProviderConfig, ProviderKind, make_analyzer
from imaginize.errors import ProviderError
from imaginize.model import Book, Chapter
from tests.fake_openai import FakeOpenAI
from tests.replies import inventing

TEXT = (
    "The orchard lay under a thin moon. No.\n\n"
    "Wren lifted the lantern high, and the fruit on the nearest bough began to glow like "
    "embers in a grate. “Grandmother?” she called.\n\n"
    "Nobody answered. The wind moved through the rows of trees and every lantern-fruit "
    "swung on its stem, throwing small gold shadows over the wet grass."
)
CHAPTER = Chapter(2, "The Orchard", "\n\n".join([TEXT] * 3))


def _enum(body: dict) -> list[str]:
    wanted = body["response_format"]
    schema = wanted.get("json_schema", {}).get("schema") or wanted["schema"]
    return schema["properties"]["scenes"]["items"]["properties"]["quote"]["enum"]


def test_choices_are_the_texts_own_sentences_short_ones_joined() -> None:
    choices = quote_choices(TEXT)
    assert all(choice in TEXT for choice in choices)
    assert choices[0] == "The orchard lay under a thin moon. No."
    assert "“Grandmother?” she called." not in choices  # too short alone: joined
    assert any(choice.endswith("“Grandmother?” she called.") for choice in choices)
    paragraphs = TEXT.split("\n\n")
    assert all(len(c) >= MIN_CHARS or c in paragraphs for c in choices)
    assert all("\n\n" not in choice for choice in choices)


def test_a_long_chunk_is_thinned_evenly_within_the_limits() -> None:
    sentences = [
        f"Sentence {n} tells of the lantern-fruit on tree number {n}." for n in range(3000)
    ]
    choices = quote_choices(" ".join(sentences))
    assert len(choices) <= MAX_CHOICES
    assert sum(map(len, choices)) <= MAX_TOTAL_CHARS
    numbers = [int(c.split()[1]) for c in choices]
    assert numbers == sorted(numbers)
    assert numbers[0] < 100 and numbers[-1] > 2800  # the whole chunk, not its start


def test_the_schema_lists_the_choices_without_changing_the_shared_one() -> None:
    plain = reply_schema(string_bounds=True)
    bound = reply_schema(string_bounds=True, quotes=("One sentence here.", "Another one."))
    quote = bound["properties"]["scenes"]["items"]["properties"]["quote"]
    assert quote["enum"] == ["One sentence here.", "Another one."]
    assert reply_schema(string_bounds=True) == plain
    assert "enum" not in plain["properties"]["scenes"]["items"]["properties"]["quote"]


@pytest.mark.parametrize("rejected", [[], ["json_schema"]])
def test_an_inventing_model_keeps_its_scenes_when_its_quotes_are_bound(
    fake_openai: FakeOpenAI, rejected: list[str]
) -> None:
    # Before: every quote the model wrote was its own, and the chapter failed.
    options = {"reject_response_format": 500, "rejected_formats": rejected} if rejected else {}
    fake_openai.script(responder=inventing, **options)
    free = OpenAIAnalyzer(model="m", api_key="k", base_url=fake_openai.url)
    with pytest.raises(ProviderError, match="quote"):
        free.analyze(CHAPTER, 2)
    bound = OpenAIAnalyzer(model="m", api_key="k", base_url=fake_openai.url, quote_choices=True)
    scenes = bound.analyze(CHAPTER, 2).scenes
    assert len(scenes) == 2
    assert all(scene.quote in CHAPTER.text for scene in scenes)
    last = fake_openai.requests[-1]["body"]
    assert _enum(last) == list(quote_choices(CHAPTER.text))


@pytest.mark.parametrize(
    ("base_url", "bound"),
    [("http://127.0.0.1:8080/v1", True), ("http://192.168.1.20:8000/v1", True), (None, False)],
)
def test_local_servers_get_bound_quotes_hosted_ones_do_not(
    base_url: str | None, bound: bool
) -> None:
    config = ProviderConfig(kind=ProviderKind.OPENAI, api_key="k", model="m", base_url=base_url)
    book = Book(path="t.epub", title="T", author="", language="en", chapters=(CHAPTER,))
    analyzer = make_analyzer(config, book)
    assert isinstance(analyzer, OpenAIAnalyzer)
    assert analyzer._quote_choices is bound


def test_straight_double_quotes_are_offered_curled_and_found_again() -> None:
    # llama-cpp-python 0.3.36 escaped a `"` of an enum value as `\\"` in its grammar: the
    # grammar failed to parse and the server died (connection refused for the rest of the run).
    text = '"Tib!" she shouted across the harbour wall. "Tib, the light has gone out!"'
    choices = quote_choices(text)
    assert choices and all('"' not in choice for choice in choices)
    finder = QuoteFinder(text)
    found = [finder.find(choice) for choice in choices]
    assert all(passage and passage in text for passage in found)
    assert "Tib!\" she shouted" in found[0]


def test_a_bound_schema_holds_a_rambling_model_to_a_complete_reply() -> None:
    # A small model filled free-text fields and lists until the output cap (replies of 600
    # tokens cut off, every chunk halved again): bound replies carry lengths and counts.
    bound = reply_schema(quotes=("One sentence here.",), scenes=3)
    scene = bound["properties"]["scenes"]
    assert scene["maxItems"] == 3
    assert scene["items"]["properties"]["description"]["maxLength"] > 0
    assert scene["items"]["properties"]["characters"]["items"]["maxLength"] > 0
    assert bound["properties"]["elements"]["maxItems"] > 0
    told = bound["properties"]["elements"]["items"]["properties"]["quotes"]["items"]
    assert told["enum"] == ["One sentence here."]
    hosted = reply_schema()
    assert "maxItems" not in hosted["properties"]["scenes"]
    assert "maxLength" not in hosted["properties"]["scenes"]["items"]["properties"]["description"]
