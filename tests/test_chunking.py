"""Sizing and cutting chapters: token estimates, scene counts, chunks and scene shares."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imaginize.model import Chapter
from imaginize.reading.chunking import (
    estimate_tokens,
    scene_count,
    share_scenes,
    split_chapter,
    word_equivalents,
)


def _chapter(text: str) -> Chapter:
    return Chapter(number=7, title="The Orchard", text=text, source="ch7.xhtml")


def _squash(text: str) -> str:
    """Text without whitespace: chunks rejoin paragraphs with blank lines, nothing else."""
    return "".join(text.split())


def _words(n: int) -> str:
    return " ".join(f"w{i % 10}" for i in range(n))


# -- estimate_tokens -------------------------------------------------------------------------


def test_estimate_tokens_latin_is_about_four_characters_a_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("a" * 400) == 100


def test_estimate_tokens_cjk_is_one_token_a_character() -> None:
    assert estimate_tokens("日本語の文章") == 6
    assert estimate_tokens("한국어") == 3
    # Mixed: 4 wide characters, then 8 narrow ones (2 tokens).
    assert estimate_tokens("東京タワー and you") == 5 + 2


def test_estimate_tokens_counts_cjk_far_higher_than_its_whitespace_words() -> None:
    text = "吾輩は猫である。名前はまだ無い。" * 100
    assert len(text.split()) == 1
    assert estimate_tokens(text) >= len(text) - 200


# -- scene_count -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "pages_per_image", "expected"),
    [
        (900, 3.0, 1),  # three pages, one image per three pages
        (1800, 3.0, 2),
        (3000, 1.0, 10),
        (3000, 2.0, 5),
        (600, 0.5, 4),
        (10, 3.0, 1),  # at least one
        (0, 3.0, 1),
    ],
)
def test_scene_count_is_one_per_pages_of_300_words(
    words: int, pages_per_image: float, expected: int
) -> None:
    assert scene_count(_words(words), pages_per_image) == expected


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_scene_count_rejects_a_non_positive_page_count(bad: float) -> None:
    with pytest.raises(ValueError):
        scene_count("some words", bad)


def test_scene_count_counts_cjk_by_characters() -> None:
    # 5,100 characters = 3,000 word equivalents = 10 pages; the text has no spaces at all.
    text = "猫" * 5100
    assert word_equivalents(text) == 3000
    assert scene_count(text, 1.0) == 10
    assert scene_count(text, 5.0) == 2


def test_word_equivalents_mixes_latin_words_and_cjk_characters() -> None:
    assert word_equivalents("three plain words") == 3
    assert word_equivalents("Tokyo 東京 station") == 2 + round(2 / 1.7)


# -- split_chapter ---------------------------------------------------------------------------


def test_split_chapter_returns_a_chapter_that_fits_unchanged() -> None:
    chapter = _chapter("One paragraph.\n\nAnother paragraph.")
    assert split_chapter(chapter, 1000) == [chapter]


def test_split_chapter_rejects_a_non_positive_budget() -> None:
    with pytest.raises(ValueError):
        split_chapter(_chapter("text"), 0)


def test_split_chapter_keeps_paragraphs_whole_and_chunks_keep_the_chapter_fields() -> None:
    paragraphs = [f"Paragraph {i} says something. " + _words(30) for i in range(20)]
    chapter = _chapter("\n\n".join(paragraphs))
    chunks = split_chapter(chapter, 120)
    assert len(chunks) > 1
    assert [p for c in chunks for p in c.paragraphs] == paragraphs
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 120
        assert (chunk.number, chunk.title, chunk.source) == (7, "The Orchard", "ch7.xhtml")


def test_split_chapter_counts_the_blank_lines_it_joins_paragraphs_with() -> None:
    # Each paragraph is exactly one token; joined, "abcd\n\nefgh" is 10 characters = 3 tokens.
    chunks = split_chapter(_chapter("abcd\n\nefgh\n\nijkl"), 2)
    assert all(estimate_tokens(c.text) <= 2 for c in chunks)
    assert [c.text for c in chunks] == ["abcd", "efgh", "ijkl"]


def test_split_chapter_cuts_an_oversized_paragraph_at_sentence_ends() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    chapter = _chapter(" ".join(sentences))
    chunks = split_chapter(chapter, 50)
    assert len(chunks) > 1
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 50
        assert chunk.text.endswith(".")
        assert chunk.text.startswith("Sentence number")


def test_split_chapter_cuts_a_sentence_less_paragraph_between_words() -> None:
    text = " ".join(f"word{i:04d}" for i in range(2000))  # no sentence end anywhere
    chunks = split_chapter(_chapter(text), 100)
    assert len(chunks) > 1
    assert _squash("".join(c.text for c in chunks)) == _squash(text)
    words = [w for c in chunks for w in c.text.split()]
    assert words == text.split()  # no word was cut in two
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 100
    # Within budget, but not wastefully small: about four characters a token.
    assert len(chunks) <= 2 * estimate_tokens(text) // 100 + 1


def test_split_chapter_cuts_unpunctuated_cjk_by_characters() -> None:
    text = "猫が庭を歩いている" * 200
    chunks = split_chapter(_chapter(text), 100)
    assert "".join(c.text for c in chunks) == text
    assert all(estimate_tokens(c.text) <= 100 for c in chunks)
    assert all(len(c.text) == 100 for c in chunks[:-1])


def test_split_chapter_cuts_cjk_at_its_full_stops() -> None:
    sentence = "今日は雨が降っている。"
    chunks = split_chapter(_chapter(sentence * 50), 60)
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 60
        assert chunk.text.endswith("。")
    assert "".join(c.text for c in chunks) == sentence * 50


_LATIN_WORD = st.sampled_from(
    ["a", "an", "orchard", "lantern", "Mira", "whispered", "x" * 40, "fruit", "glowing", "I"]
)
_CJK_RUN = st.sampled_from(
    ["猫", "犬が庭", "雨の日本語", "東京はがをにのである", "카타한국", "猫" * 45]
)
_END = st.sampled_from([".", "!", "?", "。", "\uff01", "\uff1f", '."', ".\u201d", ""])


@st.composite
def _sentence(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        body = " ".join(draw(st.lists(_LATIN_WORD, min_size=1, max_size=12)))
    else:
        body = "".join(draw(st.lists(_CJK_RUN, min_size=1, max_size=4)))
    return body + draw(_END)


@st.composite
def _paragraph(draw: st.DrawFn) -> str:
    sentences = draw(st.lists(_sentence(), min_size=1, max_size=6))
    joiner = draw(st.sampled_from([" ", "", "  ", "\n"]))
    return joiner.join(sentences)


@settings(max_examples=100, deadline=None)
@given(
    paragraphs=st.lists(_paragraph(), min_size=1, max_size=8),
    max_tokens=st.integers(min_value=1, max_value=120),
)
@pytest.mark.slow
def test_split_chapter_loses_and_duplicates_nothing_and_stays_in_budget(
    paragraphs: list[str], max_tokens: int
) -> None:
    text = "\n\n".join(paragraphs)
    chunks = split_chapter(_chapter(text), max_tokens)
    assert chunks
    assert _squash("".join(c.text for c in chunks)) == _squash(text)
    for chunk in chunks:
        assert chunk.text.strip()
        assert estimate_tokens(chunk.text) <= max_tokens
    # A paragraph that fits is never cut: it is one of the paragraphs of some chunk.
    chunk_paragraphs = {p for c in chunks for p in c.paragraphs}
    for paragraph in paragraphs:
        if estimate_tokens(paragraph) <= max_tokens and paragraph.strip():
            assert paragraph in chunk_paragraphs


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(min_value=1, max_value=3000),
    max_tokens=st.integers(min_value=1, max_value=200),
    cjk=st.booleans(),
)
@pytest.mark.slow
def test_split_chapter_cuts_one_huge_sentence_less_paragraph(
    length: int, max_tokens: int, cjk: bool
) -> None:
    rng = random.Random(length)
    alphabet = "猫犬庭雨日本語" if cjk else "abcdefgh    "
    text = "x" + "".join(rng.choice(alphabet) for _ in range(length)) + "y"
    chunks = split_chapter(_chapter(text), max_tokens)
    assert _squash("".join(c.text for c in chunks)) == _squash(text)
    assert all(estimate_tokens(c.text) <= max_tokens for c in chunks)


# -- share_scenes ----------------------------------------------------------------------------


def test_share_scenes_is_proportional_to_chunk_size() -> None:
    chunks = [_chapter("a" * 400), _chapter("b" * 400), _chapter("c" * 800)]
    assert share_scenes(8, chunks) == [2, 2, 4]


def test_share_scenes_gives_the_leftover_to_the_largest_remainders() -> None:
    chunks = [_chapter("a" * 400), _chapter("b" * 400), _chapter("c" * 400)]
    assert share_scenes(4, chunks) == [2, 1, 1]  # ties go to the first chunk


def test_share_scenes_gives_each_chunk_one_without_exceeding_the_total() -> None:
    chunks = [_chapter("a" * 4000), _chapter("b"), _chapter("c")]
    assert share_scenes(3, chunks) == [1, 1, 1]
    assert share_scenes(5, chunks) == [3, 1, 1]


def test_share_scenes_gives_one_each_when_the_total_is_too_small() -> None:
    chunks = [_chapter("a" * 40), _chapter("b" * 40), _chapter("c" * 40)]
    assert share_scenes(1, chunks) == [1, 1, 1]
    assert share_scenes(0, chunks) == [1, 1, 1]


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=10),
    extra=st.integers(min_value=0, max_value=40),
)
@pytest.mark.slow
def test_share_scenes_sums_to_the_total_and_gives_each_at_least_one(
    sizes: list[int], extra: int
) -> None:
    chunks = [_chapter("x" * size) for size in sizes]
    total = len(chunks) + extra
    shares = share_scenes(total, chunks)
    assert len(shares) == len(chunks)
    assert sum(shares) == total
    assert min(shares) >= 1
    # No chunk gets more than its exact proportional share plus one.
    weights = [max(1, estimate_tokens(c.text)) for c in chunks]
    for share, weight in zip(shares, weights, strict=True):
        assert share <= total * weight / sum(weights) + 1


def test_halve_cuts_at_the_paragraph_break_nearest_the_middle() -> None:
    from imaginize.reading.chunking import halve

    text = "One short.\n\nA second, longer paragraph here.\n\nThird one.\n\nFour."
    first, second = halve(Chapter(1, "T", text))
    assert first.text == "One short.\n\nA second, longer paragraph here."
    assert second.text == "Third one.\n\nFour."


def test_halve_cuts_one_paragraph_at_a_sentence_end_and_never_inside_a_sentence() -> None:
    from imaginize.reading.chunking import halve

    text = "The tide came in.  Wren ran! Then   it was dark and very, very cold."
    first, second = halve(Chapter(1, "T", text))
    assert (first.text, second.text) == (
        "The tide came in.  Wren ran!",
        "Then   it was dark and very, very cold.",
    )
    assert halve(Chapter(1, "T", "One sentence with no end")) == [
        Chapter(1, "T", "One sentence with no end")
    ]
