"""The offline catalogue's cast: names that are not someone to draw, and relatives who share
a surname. Synthetic texts, each reproducing a miss seen on a corpus book (benchmarks/README,
cast_gold.py)."""

from __future__ import annotations

from imaginize.analysis.offline.catalogue import Catalogue, Entry
from imaginize.model import ElementKind


def characters(texts: list[str]) -> list[Entry]:
    return [e for e in Catalogue(texts).entries if e.kind == ElementKind.CHARACTER]


def holding(entries: list[Entry], name: str) -> list[Entry]:
    return [e for e in entries if e.name == name or name in e.aliases]


# Frankenstein: "the Sorrows of Werter" is a book the creature reads, and Werter its hero.
BOOK_TITLE = [
    """Felix walked to the cottage. Felix said nothing to his sister. He carried three books.
They were a volume of Plutarch's Lives, a worn Bible and the Sorrows of Werter.""",
    """In the Sorrows of Werter the creature found a gentle and affecting story. Felix read
aloud by the fire, and Felix smiled at the old man.""",
    """I thought Werter himself a more divine being than any I had met. This book moved me
more than the Sorrows of Werter ever could. Felix closed the door.""",
]


def test_the_hero_of_a_book_title_is_no_character() -> None:
    cast = characters(BOOK_TITLE)
    assert holding(cast, "Felix")
    assert not holding(cast, "Werter"), [e.name for e in cast]


# A name inside titles sometimes, but mostly met alone, is still someone.
NOT_ONLY_A_TITLE = [
    """Nell ran to the quay. Nell said she would read the Ballad of Nell one day.
Nell laughed, and Nell waved at the boats.""",
    """The Ballad of Nell was an old song. Nell sang it while Nell mended the nets.""",
]


def test_a_name_mostly_met_alone_stays_a_character() -> None:
    assert holding(characters(NOT_ONLY_A_TITLE), "Nell")


# Frankenstein: Justine Moritz's mother is "Madame Moritz, her mother".
MOTHER = [
    """Justine Moritz entered our family when she was twelve. Justine was gentle and Justine
was clever. She said little.""",
    """Madame Moritz, her mother, was a widow with four children, of whom Justine was the
third. Madame Moritz treated her very ill. Justine Moritz left the house.""",
    """Perpetual fretting at length threw Madame Moritz into a decline. Justine Moritz
nursed her. Justine wept, and Justine Moritz said she would stay.""",
]


def test_a_titled_parent_is_not_the_child_of_that_surname() -> None:
    cast = characters(MOTHER)
    justine = holding(cast, "Justine Moritz")
    assert len(justine) == 1
    assert "Madame Moritz" not in justine[0].aliases, justine[0]
    assert holding(cast, "Madame Moritz")


# Gatsby: "Mrs. Wilson" is Myrtle Wilson, whatever is said of her husband.
WIFE = [
    """Myrtle Wilson stood in the doorway. Myrtle smiled. She was a thick woman.""",
    """Mrs. Wilson, her husband's wife for twelve years, laughed at Myrtle's sister. Mrs.
Wilson said nothing more. Myrtle Wilson went upstairs.""",
    """Mrs. Wilson sat down. Myrtle Wilson looked at her dog, and Myrtle spoke.""",
]


def test_a_titled_name_with_no_kin_beside_it_stays_merged() -> None:
    myrtle = holding(characters(WIFE), "Myrtle Wilson")
    assert len(myrtle) == 1 and "Mrs. Wilson" in myrtle[0].aliases, myrtle
