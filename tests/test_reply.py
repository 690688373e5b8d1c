"""Turning a model's reply into an Analysis: finding the JSON, the schema, the quotes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imaginize.analysis.openai.reply import (
    QuoteFinder,
    ReplyError,
    extract_json_object,
    parse_reply,
)
from imaginize.model import ElementKind, Usage

CHAPTER = (
    "The orchard was dark when Mira came down the hill.\n\n"
    "\u201cWho lit the lanterns?\u201d she asked. Nobody answered; the fruit glowed on,\n"
    "each one   a small green moon.\n\n"
    "Old Tobias\u2019s dog barked twice \u2014 then the gate creaked open."
)
USAGE = Usage(120, 80)


def _scene(quote: str, **fields: Any) -> dict[str, Any]:
    return {"quote": quote, "description": "Mira on the hill.", **fields}


def _reply(scenes: list[dict[str, Any]], elements: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"scenes": scenes, "elements": elements or []})


# -- extract_json_object ---------------------------------------------------------------------


def test_extract_plain_object() -> None:
    assert extract_json_object('{"a": 1}') == {"a": 1}


def test_extract_from_a_code_fence() -> None:
    reply = 'Here you go:\n```json\n{"scenes": [{"quote": "x"}]}\n```\n'
    assert extract_json_object(reply) == {"scenes": [{"quote": "x"}]}


def test_extract_from_chatter_around_the_object() -> None:
    reply = 'Sure! Here is the analysis: {"scenes": [], "n": 2} Hope this helps {:'
    assert extract_json_object(reply) == {"scenes": [], "n": 2}


def test_extract_with_braces_inside_strings() -> None:
    reply = 'x {"quote": "a } tricky { one", "nested": {"deep": "}}"}} y'
    assert extract_json_object(reply) == {
        "quote": "a } tricky { one",
        "nested": {"deep": "}}"},
    }


def test_extract_takes_the_first_complete_outermost_object() -> None:
    reply = '{"first": {"inner": 1}} and then {"second": 2}'
    assert extract_json_object(reply) == {"first": {"inner": 1}}


def test_extract_skips_braces_that_are_not_json() -> None:
    reply = 'Format: {scenes, elements}. Answer: {"scenes": []}'
    assert extract_json_object(reply) == {"scenes": []}


@pytest.mark.parametrize(
    "reply", ["", "no json here", "[1, 2, 3]", '"just a string"', "{broken", "{'single': 1}"]
)
def test_extract_without_an_object_is_a_reply_error(reply: str) -> None:
    with pytest.raises(ReplyError, match="no complete JSON object"):
        extract_json_object(reply)


# -- QuoteFinder -----------------------------------------------------------------------------


def test_quote_finder_returns_the_exact_passage() -> None:
    finder = QuoteFinder(CHAPTER)
    assert finder.find("the fruit glowed on") == "the fruit glowed on"


def test_quote_finder_ignores_whitespace_differences_and_keeps_the_books_spacing() -> None:
    finder = QuoteFinder(CHAPTER)
    found = finder.find("the fruit glowed on, each one a small green moon.")
    assert found == "the fruit glowed on,\neach one   a small green moon."
    assert found in CHAPTER


def test_quote_finder_matches_across_paragraphs() -> None:
    found = QuoteFinder(CHAPTER).find("came down the hill. \u201cWho lit")
    assert found == "came down the hill.\n\n\u201cWho lit"


def test_quote_finder_folds_straight_and_curly_quotes() -> None:
    finder = QuoteFinder(CHAPTER)
    # The model wrote straight quotes and a straight apostrophe; the book has curly ones.
    assert finder.find('"Who lit the lanterns?" she asked.') == (
        "Who lit the lanterns?\u201d she asked."
    )
    assert finder.find("Old Tobias's dog barked twice - then") == (
        "Old Tobias\u2019s dog barked twice \u2014 then"
    )


def test_quote_finder_folds_curly_quotes_in_the_quote_against_straight_ones_in_the_book() -> None:
    finder = QuoteFinder('He said "stop" and it\'s over.')
    assert finder.find("said \u201cstop\u201d and it\u2019s over") == 'said "stop" and it\'s over'


def test_quote_finder_rejects_invented_and_tiny_quotes() -> None:
    finder = QuoteFinder(CHAPTER)
    assert finder.find("The orchard was bright and full of people.") is None
    assert finder.find("the orchard was dark") is None  # case matters: the book says "The"
    assert finder.find("Mi") is None
    assert finder.find('  "  "  ') is None


def test_quote_finder_handles_leading_whitespace_in_the_text() -> None:
    assert QuoteFinder("\n\n  Once upon a time.").find("Once upon") == "Once upon"


FOLDS = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-"}


def reference_find(text: str, quote: str) -> str | None:
    """The rule spelt out one character at a time: fold quote marks and dashes, collapse each
    run of blanks to one space, find the quote's folded form, give back the book's own span."""
    folded, origin = [], []
    for index, char in enumerate(text):
        if char.isspace():
            if folded and folded[-1] != " ":
                folded.append(" ")
                origin.append(index)
            continue
        folded.append(FOLDS.get(char, char))
        origin.append(index)
    needle = " ".join("".join(FOLDS.get(c, c) for c in quote).split()).strip(" \"'")
    at = "".join(folded).find(needle)
    if len(needle) < 3 or at == -1:
        return None
    return text[origin[at] : origin[at + len(needle) - 1] + 1]


BOOKISH = st.sampled_from(list("ab c.*?(\\\n\t\u00a0'\"-\u2018\u2019\u201c\u201d\u2013\u2014"))


@settings(max_examples=400, deadline=None)
@given(st.text(BOOKISH, max_size=60), st.data())
@pytest.mark.slow
def test_quote_finder_agrees_with_the_rule_spelt_out(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    quote = data.draw(st.one_of(st.just(text[start:end]), st.text(BOOKISH, max_size=12)))
    assert QuoteFinder(text).find(quote) == reference_find(text, quote)


# -- parse_reply -----------------------------------------------------------------------------


def test_parse_reply_builds_scenes_and_elements_with_book_text() -> None:
    reply = _reply(
        [
            _scene(
                "  The orchard was dark when Mira came down the hill. ",
                composition=" wide shot ",
                characters=["Mira", " ", " Tobias "],
                setting="orchard",
                lighting="lantern glow",
                mood="hushed",
                imagePrompt="a girl on a dark hill above glowing fruit",
            )
        ],
        [
            {
                "name": " Mira ",
                "kind": "character",
                "description": "A girl.",
                "aliases": ["the girl", " "],
                "quotes": ["Mira came down the hill"],
            }
        ],
    )
    analysis = parse_reply(reply, CHAPTER, 2, USAGE)
    (scene,) = analysis.scenes
    assert scene.quote == "The orchard was dark when Mira came down the hill."
    assert scene.composition == "wide shot"
    assert scene.characters == ("Mira", "Tobias")
    assert scene.image_prompt == "a girl on a dark hill above glowing fruit"
    assert (scene.setting, scene.lighting, scene.mood) == ("orchard", "lantern glow", "hushed")
    (element,) = analysis.elements
    assert element.name == "Mira"
    assert element.kind is ElementKind.CHARACTER
    assert element.aliases == ("the girl",)
    assert element.quotes == ("Mira came down the hill",)
    assert analysis.usage == USAGE
    assert analysis.dropped_quotes == 0


def test_parse_reply_accepts_image_prompt_in_snake_case() -> None:
    reply = _reply([_scene("the gate creaked open", image_prompt="a gate")])
    assert parse_reply(reply, CHAPTER, 1, USAGE).scenes[0].image_prompt == "a gate"


def test_parse_reply_treats_null_fields_as_missing() -> None:
    reply = _reply(
        [_scene("the gate creaked open", lighting=None, characters=None, imagePrompt=None)],
        [{"name": "gate", "kind": "item", "description": None, "aliases": None}],
    )
    analysis = parse_reply(reply, CHAPTER, 1, USAGE)
    assert analysis.scenes[0].lighting == ""
    assert analysis.scenes[0].characters == ()
    assert analysis.elements[0].description == ""


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("{}", 'no "scenes" list'),
        ('{"scenes": {}}', "none of the 1 scenes has a quote"),
        ('{"scenes": [{"description": "x"}]}', "none of the 1 scenes has a quote"),
        ('{"scenes": [{"quote": ""}, {"quote": null}]}', "none of the 2 scenes has a quote"),
        ('{"scenes": [{"quote": ["", " "]}]}', "none of the 1 scenes has a quote"),
    ],
)
def test_parse_reply_without_a_usable_scene_says_why(reply: str, message: str) -> None:
    with pytest.raises(ReplyError, match=message):
        parse_reply(reply, CHAPTER, 1, USAGE)


def test_one_bad_element_or_scene_is_dropped_and_counted_not_the_chapter() -> None:
    # Each of these failed the whole chapter (after a repair request) before.
    reply = json.dumps(
        {
            "scenes": [
                {"quote": "the gate creaked open", "imagePrompt": []},
                {"description": "no quote at all"},
                {"quote": 7},
            ],
            "elements": [
                {"name": "Mira"},  # no kind
                {"name": "M", "kind": "vibe"},  # unknown kind
                {"kind": "item"},  # no name
                {"name": "Tobias", "kind": "character"},
            ],
        }
    )
    analysis = parse_reply(reply, CHAPTER, 3, USAGE)
    assert [s.quote for s in analysis.scenes] == ["the gate creaked open"]
    assert analysis.scenes[0].image_prompt == ""
    assert [e.name for e in analysis.elements] == ["Tobias"]
    assert analysis.dropped_items == 4
    # "7" is a quote, just not one from this chapter.
    assert analysis.dropped_quotes == 1


def test_usual_field_variants_are_read() -> None:
    reply = json.dumps(
        {
            "Scenes": [
                {
                    "Quote": {"text": "The orchard was dark"},
                    "Image Prompt": "a dark orchard",
                    "characters": "Mira, Tobias",
                    "lighting": None,
                },
                {"text": "she asked", "prompt": "a question", "characters": [{"name": "Mira"}]},
                {"quote": {"quote": "the gate creaked open"}, "imagePrompt": "a gate"},
            ],
            "elements": [
                {"name": "Mira", "type": "Characters", "aliases": "the girl; Miri"},
                {"name": "the orchard", "category": "LOCATION", "quotes": [{"text": "orchard"}]},
                {"name": "gate", "kind": "Objects", "quotes": "the gate creaked"},
            ],
        }
    )
    analysis = parse_reply(reply, CHAPTER, 3, USAGE)
    first, second, third = analysis.scenes
    assert first.quote == "The orchard was dark"
    assert first.image_prompt == "a dark orchard"
    assert first.characters == ("Mira", "Tobias")
    assert first.lighting == ""
    assert (second.quote, second.image_prompt, second.characters) == (
        "she asked",
        "a question",
        ("Mira",),
    )
    assert third.image_prompt == "a gate"
    kinds = {e.name: e.kind for e in analysis.elements}
    assert kinds == {
        "Mira": ElementKind.CHARACTER,
        "the orchard": ElementKind.PLACE,
        "gate": ElementKind.ITEM,
    }
    assert analysis.elements[0].aliases == ("the girl", "Miri")
    assert analysis.elements[2].quotes == ("the gate creaked",)
    assert (analysis.dropped_items, analysis.dropped_quotes) == (0, 0)


def test_elements_grouped_by_kind_and_a_bare_scene_list_are_read() -> None:
    grouped = json.dumps(
        {
            "scenes": ["she asked"],
            "characters": [{"name": "Mira", "description": "a girl"}, "Tobias"],
            "places": ["the orchard"],
        }
    )
    analysis = parse_reply(grouped, CHAPTER, 1, USAGE)
    assert analysis.scenes[0].quote == "she asked"
    assert [(e.name, e.kind) for e in analysis.elements] == [
        ("Mira", ElementKind.CHARACTER),
        ("Tobias", ElementKind.CHARACTER),
        ("the orchard", ElementKind.PLACE),
    ]
    bare = json.dumps([{"quote": "the gate creaked open", "description": "a gate"}])
    assert parse_reply(bare, CHAPTER, 1, USAGE).scenes[0].quote == "the gate creaked open"
    wrapped = json.dumps({"result": {"scenes": [{"quote": "she asked"}]}})
    assert parse_reply(wrapped, CHAPTER, 1, USAGE).scenes[0].quote == "she asked"


@pytest.mark.parametrize(
    "thinking",
    [
        '<think>Maybe {"scenes": []} would do? No.</think>\n',
        "<think>\nLet me pick {quote} carefully.\n</think>",
        '<reasoning>{"scenes": [{"quote": "Snow fell."}]}</reasoning>',
        '<THINK>{"scenes": []}</THINK>',
        # The template opened the block in the prompt: only its end is in the reply.
        'First {"scenes": []} then... </think>',
    ],
)
def test_reasoning_blocks_are_never_the_answer(thinking: str) -> None:
    reply = thinking + "```json\n" + _reply([_scene("the gate creaked open")]) + "\n```"
    analysis = parse_reply(reply, CHAPTER, 1, USAGE)
    assert analysis.scenes[0].quote == "the gate creaked open"


def test_a_reply_still_thinking_has_no_answer() -> None:
    with pytest.raises(ReplyError, match="no complete JSON"):
        parse_reply('<think>I could answer {"scenes": []} but', CHAPTER, 1, USAGE)


def test_the_answer_is_the_object_with_scenes_not_an_example_before_it() -> None:
    reply = 'The format is {"kind": "character"}. Answer: ' + _reply([_scene("she asked")])
    assert parse_reply(reply, CHAPTER, 1, USAGE).scenes[0].quote == "she asked"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("character", ElementKind.CHARACTER),
        (" Character ", ElementKind.CHARACTER),
        ("person", ElementKind.CHARACTER),
        ("People", ElementKind.CHARACTER),
        ("characters", ElementKind.CHARACTER),
        ("animal", ElementKind.CREATURE),
        ("Beast", ElementKind.CREATURE),
        ("monster", ElementKind.CREATURE),
        ("creatures", ElementKind.CREATURE),
        ("location", ElementKind.PLACE),
        ("setting", ElementKind.PLACE),
        ("Places", ElementKind.PLACE),
        ("locations", ElementKind.PLACE),
        ("object", ElementKind.ITEM),
        ("thing", ElementKind.ITEM),
        ("artifact", ElementKind.ITEM),
        ("ITEMS", ElementKind.ITEM),
    ],
)
def test_parse_reply_maps_kind_synonyms(kind: str, expected: ElementKind) -> None:
    reply = _reply([_scene("the gate creaked open")], [{"name": "X", "kind": kind}])
    assert parse_reply(reply, CHAPTER, 1, USAGE).elements[0].kind is expected


def test_parse_reply_drops_and_counts_invented_quotes() -> None:
    reply = _reply(
        [
            _scene("The orchard was dark"),
            _scene("Mira danced under a purple sky."),
            _scene("the gate creaked open"),
        ],
        [
            {
                "name": "Mira",
                "kind": "character",
                "quotes": ["she asked", "Mira was very tall.", "Mira laughed."],
            }
        ],
    )
    analysis = parse_reply(reply, CHAPTER, 5, USAGE)
    assert [s.quote for s in analysis.scenes] == ["The orchard was dark", "the gate creaked open"]
    assert analysis.elements[0].quotes == ("she asked",)
    assert analysis.dropped_quotes == 3


def test_parse_reply_fails_when_every_scene_quote_is_invented() -> None:
    reply = _reply([_scene("A dragon landed."), _scene("Snow fell on the castle.")])
    with pytest.raises(ReplyError, match="none of the 2 quotes"):
        parse_reply(reply, CHAPTER, 2, USAGE)


def test_parse_reply_fails_without_scenes() -> None:
    with pytest.raises(ReplyError, match="no scenes"):
        parse_reply(_reply([]), CHAPTER, 1, USAGE)


def test_parse_reply_without_scenes_is_fine_when_none_were_asked_for() -> None:
    analysis = parse_reply(_reply([], [{"name": "Mira", "kind": "person"}]), CHAPTER, 0, USAGE)
    assert analysis.scenes == ()
    assert analysis.elements[0].name == "Mira"


def test_parse_reply_caps_the_scenes_at_the_number_asked_for() -> None:
    quotes = ["The orchard was dark", "she asked", "the fruit glowed", "the gate creaked open"]
    analysis = parse_reply(_reply([_scene(q) for q in quotes]), CHAPTER, 2, USAGE)
    assert [s.quote for s in analysis.scenes] == quotes[:2]


def test_parse_reply_skips_elements_without_a_name() -> None:
    reply = _reply([_scene("she asked")], [{"name": "  ", "kind": "item"}])
    assert parse_reply(reply, CHAPTER, 1, USAGE).elements == ()


def test_parse_reply_finds_json_in_a_chatty_fenced_reply() -> None:
    reply = "Sure!\n```json\n" + _reply([_scene("she asked")]) + "\n```\nHope this helps."
    assert parse_reply(reply, CHAPTER, 1, USAGE).scenes[0].quote == "she asked"


# -- quotes not copied exactly -------------------------------------------------------------

STORY = (
    "The lighthouse stood black against a copper sky. Wren climbed the spiral stair with the "
    "tin lantern swinging in her hand.\n\n"
    "At the top the great lens waited, cold and clouded. She wiped it with her sleeve until a "
    "thin blue light shivered in the glass."
)


@pytest.mark.parametrize(
    ("near", "passage"),
    [
        (  # a word dropped, punctuation changed
            "At the top the lens waited cold and clouded",
            "At the top the great lens waited, cold and clouded.",
        ),
        (  # an ellipsis over the middle
            "Wren climbed the spiral stair ... swinging in her hand.",
            "Wren climbed the spiral stair with the tin lantern swinging in her hand.",
        ),
        (  # a word swapped, case changed
            "she wiped it with her SLEEVE until a faint blue light shivered in the glass",
            "She wiped it with her sleeve until a thin blue light shivered in the glass.",
        ),
    ],
)
def test_a_near_quote_is_kept_with_the_books_own_words(near: str, passage: str) -> None:
    reply = _reply([_scene(near)], [{"name": "Wren", "kind": "character", "quotes": [near]}])
    analysis = parse_reply(reply, STORY, 1, USAGE)
    assert analysis.scenes[0].quote == passage
    assert analysis.elements[0].quotes == (passage,)
    assert (analysis.corrected_quotes, analysis.dropped_quotes) == (2, 0)


@pytest.mark.parametrize(
    "invented",
    [
        "A dragon landed on the roof of the lighthouse and sang.",
        "The sea was calm and green under a morning sun.",
        "Wren laughed.",
    ],
)
def test_a_quote_like_nothing_in_the_chapter_is_still_dropped(invented: str) -> None:
    analysis = parse_reply(_reply([_scene(invented), _scene("cold and clouded")]), STORY, 2, USAGE)
    assert [s.quote for s in analysis.scenes] == ["cold and clouded"]
    assert (analysis.corrected_quotes, analysis.dropped_quotes) == (0, 1)


@settings(max_examples=200, deadline=None)
@given(st.data())
@pytest.mark.slow
def test_an_exact_quote_is_never_counted_as_corrected(data: st.DataObject) -> None:
    words = STORY.split()
    start = data.draw(st.integers(0, len(words) - 3))
    end = data.draw(st.integers(start + 3, len(words)))
    quote = " ".join(words[start:end])
    analysis = parse_reply(_reply([_scene(quote)]), STORY, 1, USAGE)
    assert analysis.corrected_quotes == 0
    assert analysis.scenes[0].quote.split() == quote.split()
