"""The committed sample EPUB matches its text source and has the expected shape.

Deliberately independent of the imaginize package: it reads EPUBs with ebooklib
directly and loads ``samples/build_sample.py`` by path.
"""

from __future__ import annotations

import importlib.util
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
from ebooklib import epub

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SOURCE = SAMPLES / "the-lanternfruit-orchard.txt"
COMMITTED = SAMPLES / "the-lanternfruit-orchard.epub"

XHTML = "{http://www.w3.org/1999/xhtml}"
EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"

EXPECTED_TITLES = [
    "The Night the Light Went Out",
    "Captain Vale's Lamp Room",
    "The Mapmaker of Cobble Market",
    "Into Hollowmere Wood",
    "The Mossback",
    "The Lanternfruit Orchard",
    "Through the Grey Hush",
    "The Light on Gannet Rock",
]


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_sample", SAMPLES / "build_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> epub.EpubBook:
    return epub.read_epub(str(COMMITTED))


@pytest.fixture(scope="module")
def rebuilt(builder: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> epub.EpubBook:
    out = builder.build(SOURCE, tmp_path_factory.mktemp("sample") / "rebuilt.epub")
    return epub.read_epub(str(out))


def spine_documents(book: epub.EpubBook) -> list[epub.EpubItem]:
    items = [book.get_item_with_id(idref) for idref, _linear in book.spine]
    assert all(item is not None for item in items)
    return items


def parse(item: epub.EpubItem) -> ET.Element:
    # The stored bytes; get_content() on a read EpubHtml re-renders it and drops <head>.
    return ET.fromstring(item.content)


def text_of(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def chapter_text(item: epub.EpubItem) -> tuple[str, list[str]]:
    """The <h1> title and the text of each <p> of a chapter document."""
    body = parse(item).find(f"{XHTML}body")
    assert body is not None
    titles = [text_of(h1) for h1 in body.iter(f"{XHTML}h1")]
    assert len(titles) == 1, f"{item.file_name} should have exactly one <h1>"
    return titles[0], [text_of(p) for p in body.iter(f"{XHTML}p")]


@pytest.mark.slow
def test_rebuilding_reproduces_committed_book(
    committed: epub.EpubBook, rebuilt: epub.EpubBook
) -> None:
    old, new = spine_documents(committed), spine_documents(rebuilt)
    assert [item.file_name for item in new] == [item.file_name for item in old]
    for old_item, new_item in zip(old[2:], new[2:], strict=True):
        assert chapter_text(new_item) == chapter_text(old_item), (
            f"{old_item.file_name} is stale: run `python samples/build_sample.py`"
        )
    for old_item, new_item in zip(old[:2], new[:2], strict=True):
        assert text_of(parse(new_item)) == text_of(parse(old_item))


def test_committed_book_matches_source_text(builder: ModuleType, committed: epub.EpubBook) -> None:
    story = builder.parse_source(SOURCE.read_text(encoding="utf-8"))
    chapters = [chapter_text(item) for item in spine_documents(committed)[2:]]
    expected = [
        (chapter.title, [builder.plain_text(p) for p in chapter.paragraphs])
        for chapter in story.chapters
    ]
    assert chapters == expected


def test_spine_is_front_matter_then_eight_chapters(committed: epub.EpubBook) -> None:
    docs = spine_documents(committed)
    assert len(docs) == 2 + len(EXPECTED_TITLES)
    for item, kind in zip(docs[:2], ["titlepage", "dedication"], strict=True):
        sections = [el for el in parse(item).iter() if el.get(EPUB_TYPE) == kind]
        assert sections, f"{item.file_name} has no epub:type={kind!r} element"
    titles = [chapter_text(item)[0] for item in docs[2:]]
    assert titles == EXPECTED_TITLES
    for item, title in zip(docs[2:], EXPECTED_TITLES, strict=True):
        head_title = parse(item).find(f"{XHTML}head/{XHTML}title")
        assert head_title is not None and head_title.text == title
        _title, paragraphs = chapter_text(item)
        assert len(paragraphs) >= 10


def test_metadata_and_navigation(committed: epub.EpubBook) -> None:
    assert committed.get_metadata("DC", "title")[0][0] == "The Lanternfruit Orchard"
    assert committed.get_metadata("DC", "creator")[0][0] == "The imaginize authors"
    assert committed.get_metadata("DC", "language")[0][0] == "en"
    rights = committed.get_metadata("DC", "rights")[0][0]
    assert "CC0" in rights and "imaginize" in rights
    toc_titles = [link.title for link in committed.toc]
    assert toc_titles == ["Title Page", "Dedication", *EXPECTED_TITLES]
    assert any(isinstance(item, epub.EpubNav) for item in committed.get_items())
    assert any(item.file_name.endswith(".ncx") for item in committed.get_items())


def test_paragraph_html_is_escaped(builder: ModuleType) -> None:
    assert builder.inline_html('Salt & <pepper> "quoted" *here*') == (
        'Salt &amp; &lt;pepper&gt; "quoted" <em>here</em>'
    )
    assert builder.plain_text("a *b* c") == "a b c"
