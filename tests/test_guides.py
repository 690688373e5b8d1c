"""The merge of chapter results into Contents.md, Chapters.md and Elements.md."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imaginize.analysis.providers import ProviderKind, resolve_provider
from imaginize.coordination.store import MANIFEST_NAME
from imaginize.events import Notice
from imaginize.guides.merge import (
    CHAPTERS,
    CONTENTS,
    ELEMENTS,
    MAX_ELEMENT_QUOTES,
    BookInfo,
    ChapterInfo,
    MergedElement,
    merge_elements,
    normalise_name,
    render_chapters,
    render_contents,
    render_elements,
    write_guides,
)
from imaginize.guides.results import read_result, result_path
from imaginize.model import ChapterResult, Element, ElementKind, Scene, Usage
from imaginize.reading.epub import book_fingerprint
from imaginize.run import RunOptions, run_book
from tests.epubs import build_epub

C, CR, P, IT = ElementKind.CHARACTER, ElementKind.CREATURE, ElementKind.PLACE, ElementKind.ITEM

BOOK = BookInfo(
    title="The Lanternfruit Orchard",
    author="A. N. Author",
    chapters=(
        ChapterInfo(1, "The Night the Light Went Out", 2400),
        ChapterInfo(2, "Captain Vale's Lamp Room", 1800),
        ChapterInfo(3, "The Mapmaker | of Cobble Market", 3100),
        ChapterInfo(4, "Into Hollowmere Wood", 900),
    ),
)


def _el(name: str, kind: ElementKind = C, **fields: object) -> Element:
    return Element(name=name, kind=kind, **fields)  # type: ignore[arg-type]


def _result(
    chapter: int,
    elements: tuple[Element, ...] = (),
    scenes: tuple[Scene, ...] | None = None,
    **fields: object,
) -> ChapterResult:
    if scenes is None:
        scenes = (Scene(quote=f"Quote of chapter {chapter}.", description="A view."),)
    values: dict[str, object] = {
        "chapter": chapter,
        "title": f"T{chapter}",
        "words": 100,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "scenes": scenes,
        "elements": elements,
    }
    values.update(fields)
    return ChapterResult(**values)  # type: ignore[arg-type]


def _by_name(merged: list[MergedElement]) -> dict[str, MergedElement]:
    return {m.name: m for m in merged}


# -- normalise_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("The White Rabbit", "white rabbit"),
        ("white rabbit", "white rabbit"),
        ("  WHITE   Rabbit! ", "white rabbit"),
        ("A Lantern", "lantern"),
        ("an owl", "owl"),
        ("Theodore", "theodore"),
        ("The", "the"),
        ("Tobias\u2019s Dog", "tobias's dog"),
        ("Mr. Darcy", "mr darcy"),
        ("Jean-Luc", "jean-luc"),
        ("...", ""),
    ],
)
def test_normalise_name(name: str, key: str) -> None:
    assert normalise_name(name) == key


# -- merge_elements --------------------------------------------------------------------------


def test_one_element_per_normalised_name_across_chapters() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("The White Rabbit", CR, description="A rabbit."),)),
            _result(3, (_el("white rabbit", CR, description="A rabbit in a waistcoat."),)),
            _result(2, (_el("White Rabbit!", CR),)),
        ]
    )
    assert len(merged) == 1
    (rabbit,) = merged
    assert rabbit.chapters == [1, 2, 3]
    assert rabbit.description == "A rabbit in a waistcoat."  # the fullest description
    assert rabbit.kind is CR
    # Other spellings of the same name are not listed as aliases.
    assert rabbit.aliases == []


def test_canonical_name_is_the_one_used_in_most_chapters() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("Mira Vale", aliases=("Mira",)),)),
            _result(2, (_el("Mira"),)),
            _result(3, (_el("Mira"),)),
        ]
    )
    (mira,) = merged
    assert mira.name == "Mira"
    assert mira.aliases == ["Mira Vale"]
    assert mira.chapters == [1, 2, 3]


def test_canonical_name_ties_go_to_the_fuller_then_alphabetically_first_name() -> None:
    fuller = merge_elements(
        [_result(1, (_el("Mira", aliases=("Mira Vale",)),)), _result(2, (_el("Mira Vale"),))]
    )
    assert fuller[0].name == "Mira Vale"
    alphabetical = merge_elements(
        [_result(1, (_el("the owl", CR),)), _result(2, (_el("The Owl", CR),))]
    )
    assert alphabetical[0].name == "The Owl"


def test_an_alias_naming_another_element_joins_the_two() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("Captain Vale", aliases=("the Captain", "Old Vale")),)),
            _result(2, (_el("Old Vale", description="Keeper of the lamp."),)),
            _result(4, (_el("Mira"),)),
        ]
    )
    names = _by_name(merged)
    assert set(names) == {"Captain Vale", "Mira"}
    vale = names["Captain Vale"]
    assert vale.chapters == [1, 2]
    assert vale.aliases == ["Old Vale", "the Captain"]
    assert vale.description == "Keeper of the lamp."


def test_alias_links_are_transitive_and_order_independent() -> None:
    results = [
        _result(1, (_el("Mira Vale", aliases=("Mira",)),)),
        _result(2, (_el("Mira"),)),
        _result(3, (_el("Miss Vale", aliases=("Mira Vale",)),)),
    ]
    for order in (results, results[::-1]):
        (mira,) = merge_elements(order)
        assert mira.chapters == [1, 2, 3]


def test_an_alias_shared_by_two_characters_does_not_merge_them() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("Alice Liddell", aliases=("Alice",)),)),
            _result(2, (_el("Alice Smith", aliases=("Alice",)),)),
            _result(3, (_el("Alice"),)),
        ]
    )
    assert sorted(m.name for m in merged) == ["Alice", "Alice Liddell", "Alice Smith"]


def test_a_shared_alias_joins_names_already_known_to_be_one() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("Alice Liddell", aliases=("Alice",)),)),
            _result(2, (_el("Miss Alice", aliases=("Alice", "Alice Liddell")),)),
            _result(3, (_el("Alice"),)),
            _result(4, (_el("Alice Smith"),)),
        ]
    )
    assert sorted(m.name for m in merged) == ["Alice Liddell", "Alice Smith"]
    assert _by_name(merged)["Alice Liddell"].chapters == [1, 2, 3]


def test_an_alias_does_not_join_a_character_to_an_item_or_place() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("Captain Hook", C, aliases=("Hook",)),)),
            _result(2, (_el("hook", IT), _el("Vale", C, aliases=("Vale House",)))),
            _result(3, (_el("Vale House", P),)),
        ]
    )
    assert sorted(m.name for m in merged) == ["Captain Hook", "Vale", "Vale House", "hook"]


def test_an_alias_joins_a_character_and_a_creature() -> None:
    merged = merge_elements(
        [
            _result(1, (_el("The Mossback", CR, aliases=("Old Moss",)),)),
            _result(2, (_el("Old Moss", C),)),
        ]
    )
    assert [m.name for m in merged] == ["The Mossback"]


def test_kind_is_the_most_common_with_ties_in_kind_order() -> None:
    majority = merge_elements(
        [_result(n, (_el("Mossback", k),)) for n, k in ((1, CR), (2, C), (3, CR))]
    )
    assert majority[0].kind is CR
    tie = merge_elements([_result(1, (_el("Mossback", CR),)), _result(2, (_el("Mossback", C),))])
    assert tie[0].kind is C


def test_quotes_are_unique_in_chapter_order_and_capped() -> None:
    merged = merge_elements(
        [
            _result(2, (_el("Mira", quotes=("q3", "q1")),)),
            _result(1, (_el("Mira", quotes=("q1", "q2")),)),
            _result(3, (_el("Mira", quotes=("q4", "q5")),)),
        ]
    )
    assert MAX_ELEMENT_QUOTES == 3
    assert merged[0].quotes == ["q1", "q2", "q3"]


def test_elements_are_sorted_by_kind_then_name_and_nameless_ones_dropped() -> None:
    merged = merge_elements(
        [
            _result(
                1,
                (
                    _el("lantern", IT),
                    _el("Zed", C),
                    _el("The Orchard", P),
                    _el("Abel", C),
                    _el("?!", C),
                    _el("Mossback", CR),
                ),
            )
        ]
    )
    assert [m.name for m in merged] == ["Abel", "Zed", "Mossback", "The Orchard", "lantern"]


# -- rendering -------------------------------------------------------------------------------


SCENE = Scene(
    quote="The lanterns went out\n\nall at once.",
    description="A dark street.",
    composition="wide shot",
    characters=("Mira", "Tobias"),
    setting="Cobble Market",
    lighting="moonlight",
    mood="uneasy",
    image_prompt="a dark cobbled street under the moon",
)


def test_chapters_md_has_every_scene_field_and_pending_chapters() -> None:
    results = {
        1: _result(1, scenes=(SCENE, Scene(quote="Second.", description="Another."))),
        3: _result(3),
    }
    text = render_chapters(BOOK, results)
    assert text.startswith("# The Lanternfruit Orchard: illustration guide by chapter\n")
    assert "## Chapter 1: The Night the Light Went Out" in text
    assert "### Scene 1" in text and "### Scene 2" in text
    assert "> The lanterns went out\n>\n> all at once." in text
    assert "**Visual description:** A dark street." in text
    for line in (
        "- **Composition:** wide shot",
        "- **Characters:** Mira, Tobias",
        "- **Setting:** Cobble Market",
        "- **Lighting:** moonlight",
        "- **Mood:** uneasy",
        "**Image prompt:** a dark cobbled street under the moon",
        "> Second.",
        "> Quote of chapter 3.",
    ):
        assert line in text
    # Chapters 2 and 4 have no result yet.
    assert text.count("*Not analysed yet.*") == 2
    chapter_2 = text.split("## Chapter 2")[1].split("## Chapter 3")[0]
    assert "*Not analysed yet.*" in chapter_2
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_chapters_md_leaves_out_empty_fields() -> None:
    text = render_chapters(BOOK, {1: _result(1, scenes=(Scene("Only a quote.", "Only this."),))})
    assert "**Composition:**" not in text
    assert "**Image prompt:**" not in text


def test_contents_md_lists_book_chapters_elements_provider_and_tokens() -> None:
    results = {
        1: _result(
            1,
            (_el("Mira"), _el("The Orchard", P)),
            scenes=(SCENE, SCENE),
            usage=Usage(1000, 250),
            dropped_quotes=2,
        ),
        2: _result(2, (_el("Mossback", CR),), usage=Usage(3000, 500), model="llama-3"),
    }
    merged = merge_elements(results.values())
    text = render_contents(BOOK, results, merged, failures={4: "HTTP 500: server error"})
    assert text.startswith("# The Lanternfruit Orchard\n\n*by A. N. Author*\n")
    assert "| 1 | The Night the Light Went Out | 2,400 | 2 |" in text
    assert "| 2 | Captain Vale's Lamp Room | 1,800 | 1 |" in text
    assert "| 3 | The Mapmaker \\| of Cobble Market | 3,100 | pending |" in text
    assert "| 4 | Into Hollowmere Wood | 900 | failed |" in text
    for line in ("- Characters: 1", "- Creatures: 1", "- Places: 1", "- Items: 0"):
        assert line in text
    assert "- Chapters analysed: 2 of 4" in text
    assert "- Scenes: 3" in text
    assert "- Provider: openai (gpt-4o-mini), openai (llama-3)" in text
    assert "- Tokens used: 4,750 (4,000 prompt, 750 completion)" in text
    assert "- Quotes dropped as not found in the text: 2" in text
    assert "- Chapter 4 failed: HTTP 500: server error" in text


def test_contents_md_before_any_result() -> None:
    text = render_contents(BOOK, {}, [])
    assert "- Provider: none yet" in text
    assert "- Chapters analysed: 0 of 4" in text
    assert text.count("| pending |") == 4
    assert "Quotes dropped" not in text


def test_elements_md_groups_by_kind_with_aliases_chapters_and_quotes() -> None:
    results = {
        1: _result(
            1,
            (
                _el("Mira", description="A girl with a lamp.", quotes=("Mira ran.",)),
                _el("Mossback", CR, quotes=("It rose\n\nfrom the moss.",)),
            ),
        ),
        3: _result(3, (_el("Mira Vale", aliases=("Mira",)), _el("lamp", IT))),
    }
    text = render_elements(BOOK, merge_elements(results.values()))
    assert text.startswith("# The Lanternfruit Orchard: characters, creatures, places and items")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Characters", "## Creatures", "## Items"]
    assert "### Mira Vale" in text
    assert "A girl with a lamp." in text
    assert "- **Also called:** Mira" in text
    assert (
        "- **Appears in chapters:** 1 (The Night the Light Went Out), "
        "3 (The Mapmaker | of Cobble Market)"
    ) in text
    assert "> Mira ran." in text
    # A quote spanning paragraphs stays inside one blockquote.
    assert "> It rose\n>\n> from the moss." in text


def _sample_results() -> list[ChapterResult]:
    return [
        _result(
            1,
            (_el("The White Rabbit", CR, quotes=("a", "b")), _el("Mira", aliases=("Mira Vale",))),
            usage=Usage(10, 5),
        ),
        _result(2, (_el("white rabbit", C, description="Late."), _el("Mira Vale"))),
        _result(3, (_el("Orchard", P), _el("rabbit hole", P, quotes=("c",))), model="other"),
        _result(4, (_el("Mira", description="Brave."), _el("Old Vale", aliases=("Mira",)))),
    ]


def _write(results: list[ChapterResult], failures: dict[int, str] | None = None) -> list[bytes]:
    with tempfile.TemporaryDirectory() as folder:
        paths = write_guides(Path(folder), BOOK, {r.chapter: r for r in results}, failures)
        assert [p.name for p in paths] == [CONTENTS, CHAPTERS, ELEMENTS]
        assert sorted(p.name for p in Path(folder).iterdir()) == sorted(
            [CONTENTS, CHAPTERS, ELEMENTS]
        )
        return [p.read_bytes() for p in paths]


@pytest.mark.slow
def test_guides_are_byte_identical_whatever_the_order_of_results() -> None:
    results = _sample_results()
    expected = _write(results, {3: "x"})
    rng = random.Random(5)
    for _ in range(10):
        shuffled = results[:]
        rng.shuffle(shuffled)
        assert _write(shuffled, {3: "x"}) == expected


_NAME = st.sampled_from(
    ["Mira", "mira", "The Mira", "Mira Vale", "Old Vale", "Vale", "Owl", "the owl", "Lamp"]
)
_ELEMENT = st.builds(
    Element,
    name=_NAME,
    kind=st.sampled_from(ElementKind),
    description=st.sampled_from(["", "short", "longer one", "other text"]),
    aliases=st.lists(_NAME, max_size=2).map(tuple),
    quotes=st.lists(st.sampled_from(["q1", "q2", "q3", "q4"]), max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(
    elements=st.lists(st.lists(_ELEMENT, max_size=4), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
@pytest.mark.slow
def test_merge_and_render_do_not_depend_on_result_order(
    elements: list[list[Element]], seed: int
) -> None:
    results = [_result(n, tuple(els)) for n, els in enumerate(elements, start=1)]
    shuffled = results[:]
    random.Random(seed).shuffle(shuffled)
    merged = merge_elements(results)
    assert merge_elements(shuffled) == merged
    mapping = {r.chapter: r for r in results}
    shuffled_mapping = {r.chapter: r for r in shuffled}
    assert render_elements(BOOK, merged) == render_elements(BOOK, merge_elements(shuffled))
    assert render_contents(BOOK, mapping, merged) == render_contents(
        BOOK, shuffled_mapping, merge_elements(shuffled)
    )
    # One merged element per name at most, each named as some chapter names it, and every
    # sighting found under its name or an alias in an element that lists its chapter.
    keys = [normalise_name(m.name) for m in merged]
    assert len(keys) == len(set(keys))
    assert len(merged) <= len({normalise_name(e.name) for els in elements for e in els})
    sighted = {e.name.strip() for els in elements for e in els}
    assert all(m.name in sighted for m in merged)
    for result in results:
        for element in result.elements:
            assert any(
                result.chapter in m.chapters
                and normalise_name(element.name)
                in {normalise_name(n) for n in (m.name, *m.aliases)}
                for m in merged
            )
    assert all(len(m.quotes) <= MAX_ELEMENT_QUOTES for m in merged)


def _story(path: Path, title: str, who: str, where: str) -> Path:
    text = f"<p>{who} walked slowly to the {where} under a pale grey sky at dusk.</p>" * 4
    return build_epub(path, [(f"Chapter {n}", text) for n in (1, 2)], title=title)


@pytest.mark.slow
def test_the_guides_never_quote_another_books_results_left_in_the_folder(
    tmp_path: Path,
) -> None:
    """The manifest deleted, another book's chapters/NNN.json left behind: none is adopted
    or merged, each is named once in a notice, and the chapters run are this book's."""
    first = _story(tmp_path / "a.epub", "Lighthouse", "Alice", "red lighthouse")
    second = _story(tmp_path / "b.epub", "Forest", "Bob", "dark forest")
    out = tmp_path / "out"
    offline = resolve_provider(ProviderKind.OFFLINE)
    run_book(first, RunOptions.of(out_dir=out, provider=offline, in_process=True))
    (out / MANIFEST_NAME).unlink()
    notices: list[str] = []

    def sink(event: object) -> None:
        if isinstance(event, Notice):
            notices.append(event.message)

    # Only chapter 1 is run: chapter 2's file stays the other book's, and is left out.
    options = RunOptions.of(out_dir=out, provider=offline, in_process=True, chapters="1")
    finished = run_book(second, options, sink)
    assert (finished.completed, finished.total) == (1, 1)
    guides = "".join((out / name).read_text(encoding="utf-8") for name in (CONTENTS, CHAPTERS))
    assert "Bob" in guides and "Alice" not in guides
    assert "| 2 | Chapter 2 | 56 | pending |" in (out / CONTENTS).read_text(encoding="utf-8")
    assert read_result(result_path(out, 1)).book_sha256 == book_fingerprint(second)
    one, two = str(result_path(out, 1)), str(result_path(out, 2))
    named = [(n.split(" ")[0], n.rsplit("; ", 1)[1]) for n in notices if "another book" in n]
    assert named == [
        (one, "chapter 1 will be analysed again"),  # and it was
        (two, "chapter 2 will be analysed again"),  # once it is selected
        (two, "left out of the guides"),
    ]


def test_chapters_md_says_a_failed_chapter_failed_and_why() -> None:
    # It said "Not analysed yet" for a chapter that had failed for good.
    failures = {2: "HTTP 400: maximum context length is 8192 tokens\x1b[2J"}
    text = render_chapters(BOOK, {1: _result(1)}, failures)
    chapter_2 = text.split("## Chapter 2")[1].split("## Chapter 3")[0]
    assert "*Failed: HTTP 400: maximum context length is 8192 tokens\\x1b[2J*" in chapter_2
    assert "Not analysed yet" not in chapter_2
