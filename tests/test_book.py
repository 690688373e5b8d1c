"""Reading EPUBs into story chapters: structure, text, bad input, and the real-world corpus."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from imaginize.errors import BookError, ConfigError
from imaginize.model import Book
from imaginize.reading import xhtml
from imaginize.reading.epub import (
    CHAPTER_CHARS,
    ReadLimits,
    _Budget,
    book_fingerprint,
    chapter_selection,
    read_book,
)
from tests.epubs import (
    JPEG_MAGIC,
    KNOWN_CHAPTERS,
    PNG,
    ROMAN,
    Doc,
    Expected,
    build_epub,
    declare_size,
    edit_member,
    inflate_member,
    opf_name,
    paragraphs,
    rewrite_zip,
    without_toc,
    write_zip,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SAMPLE = ROOT / "samples" / "the-lanternfruit-orchard.epub"

THREE = [
    ("The Storm", "<p>The storm came in at dusk.</p><p>Nobody slept.</p>"),
    ("The Calm", "<p>Morning was quiet.</p>"),
    ("The Harbour", "<p>Boats rocked in the harbour.</p>"),
]


def titles(book: Book) -> list[str]:
    return [c.title for c in book.chapters]


def first_paragraphs(book: Book) -> list[str]:
    return [c.paragraphs[0] for c in book.chapters]


def reason(path: Path) -> str:
    with pytest.raises(BookError) as info:
        read_book(path)
    assert info.value.path == path
    assert str(path) in str(info.value)
    return info.value.reason


# ---------------------------------------------------------------------------- structure


def test_plain_book(tmp_path: Path) -> None:
    book = read_book(build_epub(tmp_path / "b.epub", THREE, title="Sea", author="A. Writer"))
    assert (book.title, book.author, book.language) == ("Sea", "A. Writer", "en")
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert [c.number for c in book.chapters] == [1, 2, 3]
    # The <h1> repeating the title is not part of the text.
    assert book.chapters[0].text == "The storm came in at dusk.\n\nNobody slept."
    assert book.chapters[0].source == "chapter-01.xhtml"
    assert book.warnings == ()


def test_front_and_back_matter_dropped(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE, front_matter=True, back_matter=True)
    book = read_book(path)
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert [c.number for c in book.chapters] == [1, 2, 3]
    everything = "\n".join(c.text for c in book.chapters)
    for boilerplate in ("All rights reserved", "For everyone who tests", "Test Serif", "lives in"):
        assert boilerplate not in everything


def test_short_story_named_like_the_book_is_kept(tmp_path: Path) -> None:
    story = [("Tiny Tale", "<p>Once there was a tale so short that it fit on a single page.</p>")]
    book = read_book(build_epub(tmp_path / "b.epub", story, title="Tiny Tale"))
    assert titles(book) == ["Tiny Tale"]


def test_story_chapters_with_boilerplate_words_in_the_title_are_kept(tmp_path: Path) -> None:
    story = [("The Licence to Kill", "<p>Bond waited.</p>"), ("Notes from a Cellar", "<p>Dim.</p>")]
    book = read_book(build_epub(tmp_path / "b.epub", story))
    assert titles(book) == ["The Licence to Kill", "Notes from a Cellar"]


def test_front_matter_dropped_without_a_toc(tmp_path: Path) -> None:
    book = read_book(build_epub(tmp_path / "b.epub", THREE, front_matter=True, toc="none"))
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]


def test_gutenberg_header_and_licence_stripped(tmp_path: Path) -> None:
    book = read_book(build_epub(tmp_path / "b.epub", THREE, title="Sea", gutenberg=True))
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert book.chapters[0].paragraphs[0] == "The storm came in at dusk."
    assert all("Gutenberg" not in c.text for c in book.chapters)


def test_gutenberg_markers_in_plain_paragraphs(tmp_path: Path) -> None:
    # Older Gutenberg books have the markers as ordinary text, not in a boilerplate <section>.
    chapters = [
        (
            "One",
            "<p>Produced by volunteers.</p><p>*** START OF THIS PROJECT GUTENBERG EBOOK "
            "SEA ***</p><p>It begins.</p>",
        ),
        (
            "Two",
            "<p>It ends.</p><p>End of the Project Gutenberg EBook of Sea</p>"
            "<p>*** END OF THIS PROJECT GUTENBERG EBOOK SEA ***</p><p>Licence text.</p>",
        ),
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters))
    assert [c.text for c in book.chapters] == ["It begins.", "It ends."]


def test_linear_no_dropped(tmp_path: Path) -> None:
    chapters = [THREE[0], Doc("Footnotes", "<p>1. A note.</p>", linear=False), THREE[1]]
    book = read_book(build_epub(tmp_path / "b.epub", chapters))
    assert titles(book) == ["The Storm", "The Calm"]


def test_image_only_and_empty_documents_dropped(tmp_path: Path) -> None:
    chapters = [
        Doc("Plate", '<div><img src="plate.png" alt="A ship"/></div>', heading=False),
        THREE[0],
        Doc("Blank", "<div> </div>", heading=False, in_toc=False),
        THREE[1],
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters, images={"plate.png": PNG}))
    assert titles(book) == ["The Storm", "The Calm"]
    assert [c.number for c in book.chapters] == [1, 2]


def test_toc_fragments_split_one_document(tmp_path: Path) -> None:
    body = "<h1>The Whole Book</h1><p>by Someone</p>" + "".join(
        f'<section id="c{n}"><h2>{n}.</h2><p>Part {n} begins.</p>{paragraphs(3)}</section>'
        for n in (1, 2, 3)
    )
    toc = [(f"{n}.", f"chapter-01.xhtml#c{n}") for n in (1, 2, 3)]
    book = read_book(
        build_epub(tmp_path / "b.epub", [Doc("X", body, heading=False)], title="Whole", toc=toc)
    )
    assert titles(book) == ["1.", "2.", "3."]
    assert first_paragraphs(book) == ["Part 1 begins.", "Part 2 begins.", "Part 3 begins."]
    assert [c.source for c in book.chapters] == [f"chapter-01.xhtml#c{n}" for n in (1, 2, 3)]
    assert all(len(c.paragraphs) == 4 for c in book.chapters)


def test_anchor_inside_a_paragraph_still_splits(tmp_path: Path) -> None:
    body = '<p>First part.</p><p><a id="two"/>Second part.</p><p>More.</p>'
    toc = [("One", "chapter-01.xhtml"), ("Two", "chapter-01.xhtml#two")]
    book = read_book(build_epub(tmp_path / "b.epub", [Doc("One", body)], toc=toc))
    assert [c.text for c in book.chapters] == ["First part.", "Second part.\n\nMore."]


def test_toc_that_continues_over_files(tmp_path: Path) -> None:
    # A chapter split over two files (as converters do) stays one chapter.
    chapters = [THREE[0], Doc("", "<p>The storm went on.</p>", in_toc=False), THREE[1]]
    book = read_book(build_epub(tmp_path / "b.epub", chapters))
    assert titles(book) == ["The Storm", "The Calm"]
    assert book.chapters[0].paragraphs[-1] == "The storm went on."


def test_file_the_toc_skips_after_front_matter_is_kept(tmp_path: Path) -> None:
    # The prologue has no TOC entry; it follows the dropped contents page, not a chapter.
    chapters = [
        Doc("Contents", '<ol><li><a href="chapter-03.xhtml">The Storm</a></li></ol>'),
        Doc("Prologue", "<p>Long before the storm.</p>", in_toc=False),
        THREE[0],
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters))
    assert titles(book) == ["Prologue", "The Storm"]


def test_no_toc_falls_back_to_files(tmp_path: Path) -> None:
    chapters = [
        Doc("", "<h2>Chapter One</h2><h3>Arrival</h3><p>They came.</p>", heading=False),
        Doc("", "<p>No heading here.</p>", heading=False),
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters, toc="none", nav=False))
    assert titles(book) == ["Chapter One: Arrival", "Chapter 2"]
    assert [c.text for c in book.chapters] == ["They came.", "No heading here."]


def test_toc_coarser_than_files_is_ignored(tmp_path: Path) -> None:
    chapters = [(f"Chapter {n}", f"<p>Text {n}.</p>") for n in range(1, 7)]
    toc = [("Start", "chapter-01.xhtml")]
    book = read_book(build_epub(tmp_path / "b.epub", chapters, toc=toc))
    assert titles(book) == [f"Chapter {n}" for n in range(1, 7)]
    assert any("coarser" in w for w in book.warnings)


def test_nested_toc_flattened_to_leaves(tmp_path: Path) -> None:
    chapters = [
        Doc("Book One", "<p>Book One</p>", "part1.xhtml", heading=False),
        Doc("I", "<p>One one.</p>", "p1c1.xhtml"),
        Doc("II", "<p>One two.</p>", "p1c2.xhtml"),
        Doc("Book Two", "<p>Book Two</p>", "part2.xhtml", heading=False),
        Doc("I", "<p>Two one.</p>", "p2c1.xhtml"),
    ]
    toc = [
        ("Book One", "part1.xhtml", [("I", "p1c1.xhtml"), ("II", "p1c2.xhtml")]),
        ("Book Two", "part2.xhtml", [("I", "p2c1.xhtml")]),
        ("Epilogue", "", [("Afterwards", "p2c1.xhtml")]),
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters, toc=toc, ncx=False))
    # Part title pages are dropped only because they hold no more than their title; the
    # repeated "I" gets its part's name.
    assert titles(book) == ["Book One \u2014 I", "II", "Book Two \u2014 I"]
    assert [c.text for c in book.chapters] == ["One one.", "One two.", "Two one."]


def test_section_and_first_child_at_one_place(tmp_path: Path) -> None:
    toc = [
        (
            "Part",
            "chapter-01.xhtml",
            [("The Storm", "chapter-01.xhtml"), ("The Calm", "chapter-02.xhtml")],
        )
    ]
    book = read_book(build_epub(tmp_path / "b.epub", THREE[:2], toc=toc))
    assert titles(book) == ["The Storm", "The Calm"]


def test_toc_entry_with_missing_anchor(tmp_path: Path) -> None:
    toc = [
        ("The Storm", "chapter-01.xhtml"),
        ("Nowhere", "chapter-01.xhtml#nope"),
        ("The Calm", "chapter-02.xhtml"),
    ]
    book = read_book(build_epub(tmp_path / "b.epub", THREE[:2], toc=toc))
    assert titles(book) == ["The Storm", "The Calm"]
    assert any("anchors that do not exist" in w for w in book.warnings)


def test_ncx_in_a_subfolder_with_encoded_names(tmp_path: Path) -> None:
    docs = [Doc("The Storm", "<p>A.</p>", "chapter one.xhtml"), Doc("The Calm", "<p>B.</p>")]
    path = build_epub(tmp_path / "b.epub", docs, nav=False)
    with zipfile.ZipFile(path) as zf:
        opf, ncx = zf.read("EPUB/content.opf").decode(), zf.read("EPUB/toc.ncx").decode()
    ncx = ncx.replace('src="chapter one.xhtml"', 'src="../chapter%20one.xhtml"')
    ncx = ncx.replace('src="chapter-02.xhtml"', 'src="../chapter-02.xhtml"')
    ncx = ncx.replace(">The Storm<", ">First<").replace(">The Calm<", ">Second<")
    opf = opf.replace('href="toc.ncx"', 'href="nav/toc.ncx"')
    opf = opf.replace('href="chapter one.xhtml"', 'href="chapter%20one.xhtml"')
    replace = {"EPUB/nav/toc.ncx": ncx, "EPUB/content.opf": opf}
    book = read_book(rewrite_zip(path, path, drop=["EPUB/toc.ncx"], replace=replace))
    assert titles(book) == ["First", "Second"]
    assert [c.source for c in book.chapters] == ["chapter one.xhtml", "chapter-02.xhtml"]


def test_metadata_fallbacks(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "untitled-book.epub", THREE, title=None, author=None)
    book = read_book(path)
    assert (book.title, book.author) == ("untitled-book", "Unknown author")


def test_epub3_author_roles(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE, author="Ann Author")
    opf = opf_name(path)
    edit_member(
        path,
        opf,
        "</metadata>",
        '<dc:creator id="ill">Ivy Illustrator</dc:creator>'
        '<meta refines="#ill" property="role" scheme="marc:relators">ill</meta></metadata>',
    )
    assert read_book(path).author == "Ann Author"


# ---------------------------------------------------------------------------- text


def test_text_extraction_rules(tmp_path: Path) -> None:
    body = (
        "<h1>The Storm</h1>"
        "<p>Rain   fell\n   on the <em>roof</em>.<script>alert(1)</script></p>"
        "<style>p { color: red }</style>"
        "<div>Line one<br/>Line two</div>"
        '<p>He said so.<a epub:type="noteref" href="#n1">1</a><span class="pagenum">[7]</span></p>'
        "<ul><li>apples</li><li>pears</li></ul>"
        "<blockquote><p>A quote.</p></blockquote>"
        "<h2>A later heading</h2><p>After\u00ad\u200bwards.</p>"
        "<table><tr><td>cell a</td><td>cell b</td></tr></table>"
    )
    book = read_book(build_epub(tmp_path / "b.epub", [Doc("The Storm", body)]))
    assert book.chapters[0].paragraphs == [
        "Rain fell on the roof.",
        "Line one",
        "Line two",
        "He said so.",
        "apples",
        "pears",
        "A quote.",
        "A later heading",
        "Afterwards.",
        "cell a cell b",
    ]


def test_raw_xhtml_with_html_entities_and_tag_soup(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE[:2])
    doctype = (
        "<?xml version='1.0' encoding='utf-8'?>\n<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.1//EN'"
        " 'http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd'>\n"
    )
    entities = (
        doctype + '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>x</title></head>'
        "<body><h1>The Storm</h1><p>It&nbsp;was &mdash; &ldquo;dark&rdquo; &amp; cold.</p>"
        "</body></html>"
    )
    soup = "<html><body><h1>The Calm<p>Unclosed <b>bold<p>Second &eacute;t&eacute;</body>"
    rewrite_zip(
        path, path, replace={"EPUB/chapter-01.xhtml": entities, "EPUB/chapter-02.xhtml": soup}
    )
    book = read_book(path)
    # No-break spaces collapse like any whitespace: quotes typed with plain spaces must match.
    assert book.chapters[0].text == "It was \u2014 \u201cdark\u201d & cold."
    assert book.chapters[1].paragraphs == ["Unclosed bold", "Second été"]


@pytest.mark.slow
def test_large_single_document_is_fast(tmp_path: Path) -> None:
    # 200,000 words in one file, split by 40 TOC anchors: must stay linear.
    body = "".join(
        f'<section id="s{n}"><h2>Part {n}</h2>{paragraphs(500, words=10, start=n * 1000)}</section>'
        for n in range(40)
    )
    toc = [(f"Part {n}", f"chapter-01.xhtml#s{n}") for n in range(40)]
    path = build_epub(tmp_path / "big.epub", [Doc("Big", body, heading=False)], toc=toc)
    started = time.perf_counter()
    book = read_book(path)
    elapsed = time.perf_counter() - started
    assert len(book.chapters) == 40
    assert sum(c.word_count for c in book.chapters) == 200_000
    assert book.chapters[39].paragraphs[0].startswith("Paragraph 39000 ")
    assert elapsed < 5, f"reading took {elapsed:.1f}s"


# ---------------------------------------------------------------------------- recoverable


def test_missing_resource_is_a_warning(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE, images={"map.png": PNG})
    rewrite_zip(path, path, drop=["EPUB/map.png"])
    book = read_book(path)
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert len(book.warnings) == 1 and "map.png" in book.warnings[0]


def test_missing_chapter_file_is_a_warning(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    rewrite_zip(path, path, drop=["EPUB/chapter-02.xhtml"])
    book = read_book(path)
    assert titles(book) == ["The Storm", "The Harbour"]
    assert any("chapter-02.xhtml" in w for w in book.warnings)


def test_broken_nav_falls_back_to_ncx(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    nav = '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>no toc</p></body></html>'
    rewrite_zip(path, path, replace={"EPUB/nav.xhtml": nav})
    book = read_book(path)
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert any("navigation document" in w for w in book.warnings)


def test_broken_nav_and_no_ncx_falls_back_to_spine(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE, ncx=False)
    rewrite_zip(path, path, replace={"EPUB/nav.xhtml": "<html><body></body></html>"})
    book = read_book(path)
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert book.warnings


def test_container_with_unusual_media_type(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    edit_member(path, "META-INF/container.xml", "application/oebps-package+xml", "text/xml")
    assert len(read_book(path).chapters) == 3


# ---------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    assert reason(tmp_path / "nope.epub") == "file not found"


def test_directory(tmp_path: Path) -> None:
    assert "directory" in reason(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.epub"
    path.write_bytes(b"")
    assert reason(path) == "file is empty"


def test_jpeg_renamed(tmp_path: Path) -> None:
    path = tmp_path / "photo.epub"
    path.write_bytes(JPEG_MAGIC + bytes(200))
    assert reason(path).startswith("not a ZIP archive")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.epub"
    path.write_text("just some text\n")
    assert reason(path) == "not a ZIP archive (is this an EPUB?)"


def test_truncated_zip(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "damaged ZIP archive" in reason(path)


def test_no_container(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    rewrite_zip(path, path, drop=["META-INF/container.xml"])
    assert reason(path) == "missing META-INF/container.xml"


def test_hand_built_zip_without_container(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "b.epub", {"mimetype": "application/epub+zip", "OEBPS/a.xhtml": "<html/>"}
    )
    assert reason(path) == "missing META-INF/container.xml"


def test_no_opf(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    rewrite_zip(path, path, drop=[opf_name(path)])
    assert reason(path) == "missing package document EPUB/content.opf"


def test_no_spine(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    opf = opf_name(path)
    with zipfile.ZipFile(path) as zf:
        text = zf.read(opf).decode()
    start, end = text.index("<spine"), text.index("</spine>") + len("</spine>")
    rewrite_zip(path, path, replace={opf: text[:start] + text[end:]})
    assert reason(path) == "no spine in the package document"


def test_garbage_opf(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    rewrite_zip(path, path, replace={opf_name(path): b"\x00\x01 not xml"})
    assert "not valid XML" in reason(path)


def test_no_text(tmp_path: Path) -> None:
    chapters = [Doc("A", "<div><img src='a.png'/></div>", heading=False), Doc("B", "<p> </p>")]
    path = build_epub(tmp_path / "b.epub", chapters, images={"a.png": PNG}, toc="none")
    assert reason(path).startswith("no readable text")


def test_only_front_matter(tmp_path: Path) -> None:
    chapters = [Doc("Copyright", "<p>Copyright 2024. All rights reserved.</p>")]
    assert reason(build_epub(tmp_path / "b.epub", chapters)).startswith("no readable text")


def test_encrypted_content(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    encryption = (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
        '<enc:CipherReference URI="EPUB/chapter-01.xhtml"/></enc:CipherData>'
        "</enc:EncryptedData></encryption>"
    )
    rewrite_zip(path, path, replace={"META-INF/encryption.xml": encryption})
    assert "encrypted" in reason(path)


def test_random_damage_never_leaks_raw_exceptions(tmp_path: Path) -> None:
    original = build_epub(tmp_path / "b.epub", THREE, front_matter=True).read_bytes()
    rng = random.Random(7)
    for n in range(40):
        data = bytearray(original)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if n % 4 == 0:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / f"damaged-{n}.epub"
        path.write_bytes(bytes(data))
        with contextlib.suppress(BookError):
            read_book(path)


# ---------------------------------------------------------------------------- size limits

MiB = 1 << 20
CHAPTER = "EPUB/chapter-01.xhtml"
XHTML_HEAD = b'<html xmlns="http://www.w3.org/1999/xhtml"><body>'
XHTML_TAIL = b"</body></html>"
PARAGRAPH = b"<p>The lantern swung in the wind and the orchard went dark again.</p>\n"


def inflated(
    tmp_path: Path,
    size: int,
    *,
    name: str = CHAPTER,
    head: bytes = XHTML_HEAD,
    unit: bytes = PARAGRAPH,
    tail: bytes = XHTML_TAIL,
) -> Path:
    """THREE with one member grown to ~`size` bytes of repeated `unit` (deflated ~1000:1)."""
    src = build_epub(tmp_path / "base.epub", THREE, images={"map.png": PNG})
    big = tmp_path / "big.epub"
    return inflate_member(src, big, name, head=head, unit=unit, size=size, tail=tail)


# The child gets an address space far below what reading the bomb whole would take.
_BOUNDED_READ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
from imaginize.reading.epub import read_book
from imaginize.errors import BookError
try:
    read_book(sys.argv[1])
    print("read")
except BookError as exc:
    print(exc.reason)
"""


@pytest.mark.slow
def test_zip_bomb_is_refused_naming_the_member_within_bounded_memory(tmp_path: Path) -> None:
    # 200 MiB behind ~0.6 MiB: it used to be read whole (ebooklib, then a tree): MemoryError
    # in 512 MiB of address space, and several GiB without a limit (19 GiB at 1 GiB).
    path = inflated(tmp_path, 200 * MiB)
    assert path.stat().st_size < MiB
    child = subprocess.run(
        [sys.executable, "-c", _BOUNDED_READ, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    why = child.stdout.strip()
    assert why.startswith(f"{CHAPTER} declares 200.0 MiB"), why
    assert "64.0 MiB limit for one file (IMAGINIZE_EPUB_FILE_LIMIT_MB)" in why


def test_navigation_is_parsed_whole_so_its_limit_is_lower(tmp_path: Path) -> None:
    # A 16 MiB nav made a tree of ~0.5 GiB (60 MiB: 1.8 GiB and 97 s); 4 MiB is 290 times
    # the largest structure file in the corpus.
    head = b'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
    head += b'<body><nav epub:type="toc" id="toc"><ol>'
    unit = b'<li><a href="chapter-02.xhtml">The Calm</a></li>\n'
    tail = b"</ol></nav></body></html>"
    path = inflated(tmp_path, 16 * MiB, name="EPUB/nav.xhtml", head=head, unit=unit, tail=tail)
    assert reason(path) == (
        "EPUB/nav.xhtml declares 16.0 MiB beyond the 4.0 MiB limit for a package or navigation"
        " file (IMAGINIZE_EPUB_NAV_LIMIT_MB); refused (a zip bomb?)"
    )
    with pytest.raises(BookError, match=r"EPUB/content\.opf declares [\d,]+ bytes beyond the 500"):
        read_book(build_epub(tmp_path / "b.epub", THREE), ReadLimits(structure=500))
    assert ReadLimits.from_env({"IMAGINIZE_EPUB_NAV_LIMIT_MB": "32"}).structure == 32 * MiB


@pytest.mark.slow
def test_member_limit(tmp_path: Path) -> None:
    path = inflated(tmp_path, 2 * MiB)
    with pytest.raises(BookError) as info:
        read_book(path, ReadLimits(member=MiB, total=64 * MiB))
    assert info.value.reason.startswith(f"{CHAPTER} declares 2.0 MiB beyond the 1.0 MiB limit")
    # 1.9 million characters: two parts, then The Calm and The Harbour.
    assert len(read_book(path, ReadLimits(member=3 * MiB)).chapters) == 4


@pytest.mark.slow
def test_total_limit_names_the_member_that_crosses_it(tmp_path: Path) -> None:
    chapters = [(f"Chapter {n}", paragraphs(6000)) for n in range(1, 4)]  # ~0.4 MiB each
    path = build_epub(tmp_path / "b.epub", chapters)
    with pytest.raises(BookError) as info:
        read_book(path, ReadLimits(member=MiB, total=MiB))
    assert info.value.reason.startswith("EPUB/chapter-03.xhtml takes the text past the 1.0 MiB")
    assert "limit for a whole book (IMAGINIZE_EPUB_TEXT_LIMIT_MB)" in info.value.reason
    assert len(read_book(path, ReadLimits(member=MiB, total=2 * MiB)).chapters) == 3


def test_bytes_read_count_whatever_the_header_declares(tmp_path: Path) -> None:
    # A ZIP reader that trusted a lying header would hand over more than declared: the
    # budget counts what actually comes out.
    class Lying:
        def getinfo(self, name: str) -> zipfile.ZipInfo:
            info = zipfile.ZipInfo(name)
            info.file_size = 100
            return info

        def open(self, name: str) -> io.BytesIO:
            return io.BytesIO(b"x" * (3 * MiB))

    budget = _Budget(tmp_path / "b.epub", Lying(), ReadLimits(member=2 * MiB))  # type: ignore[arg-type]
    with pytest.raises(BookError, match=r"^.*: doc.xhtml expands beyond the 2.0 MiB limit"):
        budget.read("doc.xhtml")
    # And zipfile itself stops at the declared size: the chapter is damaged, not huge.
    path = build_epub(tmp_path / "lie.epub", THREE)
    rewrite_zip(path, path, replace={CHAPTER: XHTML_HEAD + PARAGRAPH * 50_000 + XHTML_TAIL})
    declare_size(path, CHAPTER, 1000)
    book = read_book(path, ReadLimits(member=MiB))
    assert titles(book) == ["The Calm", "The Harbour"]
    assert any("chapter-01.xhtml" in w and "damaged" in w for w in book.warnings)


@pytest.mark.slow
def test_limits_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = inflated(tmp_path, 2 * MiB)
    monkeypatch.setenv("IMAGINIZE_EPUB_FILE_LIMIT_MB", "1.5")
    assert "1.5 MiB limit for one file" in reason(path)
    monkeypatch.setenv("IMAGINIZE_EPUB_FILE_LIMIT_MB", "3")
    assert len(read_book(path).chapters) == 4
    assert ReadLimits.from_env({"IMAGINIZE_EPUB_TEXT_LIMIT_MB": "1024"}).total == 1024 * MiB
    for bad in ("0", "-1", "lots", "nan", "inf"):
        with pytest.raises(ConfigError, match="IMAGINIZE_EPUB_TEXT_LIMIT_MB"):
            ReadLimits.from_env({"IMAGINIZE_EPUB_TEXT_LIMIT_MB": bad})


@pytest.mark.slow
def test_images_are_never_decompressed(tmp_path: Path) -> None:
    # A 64 MiB image bomb: neither ebooklib nor the damage check reads it any more.
    path = inflated(tmp_path, 64 * MiB, name="EPUB/map.png", head=PNG, unit=b"\0", tail=b"")
    book = read_book(path, ReadLimits(member=MiB, total=MiB))
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    assert book.warnings == ()


@pytest.mark.slow
def test_huge_chapter_is_read_in_parts_with_a_warning(tmp_path: Path) -> None:
    path = inflated(tmp_path, int(2.5 * CHAPTER_CHARS))
    with zipfile.ZipFile(path) as zf:
        written = zf.read(CHAPTER).count(b"<p>")
    book = read_book(path)
    assert titles(book) == [f"The Storm (part {k} of 3)" for k in (1, 2, 3)] + [
        "The Calm",
        "The Harbour",
    ]
    assert [c.number for c in book.chapters] == [1, 2, 3, 4, 5]
    assert all(len(c.text) <= CHAPTER_CHARS for c in book.chapters)
    paragraph = "The lantern swung in the wind and the orchard went dark again."
    texts = [p for c in book.chapters[:3] for p in c.paragraphs]
    assert set(texts) == {paragraph} and len(texts) == written
    assert [w for w in book.warnings if "chapter-01.xhtml" in w and "3 parts" in w]


@pytest.mark.slow
def test_paragraph_without_breaks_is_cut_at_blanks(tmp_path: Path) -> None:
    # 3 MiB of words in one <p>: blocks of at most xhtml.MAX_BLOCK characters, words whole.
    words = 3 * MiB // len(b"orchard ")
    path = inflated(
        tmp_path, 3 * MiB, head=XHTML_HEAD + b"<p>", unit=b"orchard ", tail=b"</p>" + XHTML_TAIL
    )
    book = read_book(path)
    story = [p for c in book.chapters[:-2] for p in c.paragraphs]
    assert len(story) > 2 and all(len(p) <= xhtml.MAX_BLOCK for p in story)
    assert sum(len(p.split()) for p in story) >= words
    assert set(" ".join(story).split()) == {"orchard"}


@pytest.mark.parametrize("markup", ["xml", "tag soup"])
@pytest.mark.slow
def test_deeply_nested_document_keeps_its_text(tmp_path: Path, markup: str) -> None:
    # Past libxml2's tree depth (256, or 2048 with huge_tree) the chapter used to vanish.
    depth = 5000
    soup = "<br>" if markup == "tag soup" else "<br/>"
    body = "<div>" * depth + f"<p>Deep in the orchard.{soup}</p>" + "</div>" * depth
    path = build_epub(tmp_path / "b.epub", [("Deep", "<p>x</p>"), *THREE[1:]])
    # Written by hand: ebooklib would cut the nesting short itself when it writes the book.
    rewrite_zip(path, path, replace={CHAPTER: f"<html><body><h1>Deep</h1>{body}</body></html>"})
    book = read_book(path)
    assert titles(book) == ["Deep", "The Calm", "The Harbour"]
    assert book.chapters[0].text == "Deep in the orchard."


def test_long_text_skipped_as_not_story_is_named(tmp_path: Path) -> None:
    chapters = [*THREE, ("Notes", paragraphs(400)), ("Index", paragraphs(3))]
    book = read_book(build_epub(tmp_path / "b.epub", chapters))
    assert titles(book) == ["The Storm", "The Calm", "The Harbour"]
    # The long "Notes" is named; a short "Index" is ordinary back matter and is not.
    assert book.warnings == (
        "chapter-04.xhtml (25,495 characters) skipped as not story: title 'Notes'",
    )


def test_entities_split_across_chunks() -> None:
    pieces = [b"<html><body><p>It&nb", b"sp;was &md", b"ash; cold &amp; d", b"ark &bogus;</p>"]
    doc = xhtml.extract(lambda: iter([*pieces, b"</body></html>"]))
    assert [b.text for b in doc.blocks] == ["It was \u2014 cold & dark &bogus;"]


# ---------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1-3,7", [1, 2, 3, 7]),
        ("7, 1-3", [1, 2, 3, 7]),
        ("2", [2]),
        ("3-3", [3]),
        ("2-4,3-5", [2, 3, 4, 5]),
        ("8-", [8, 9, 10]),
        ("all", list(range(1, 11))),
    ],
)
def test_chapter_selection(spec: str, expected: list[int]) -> None:
    assert chapter_selection(spec, 10) == expected


@pytest.mark.parametrize("spec", ["", "a", "1-", "0", "11", "3-2", "1,,2", "1-2-3", "-3", "1.5"])
def test_chapter_selection_rejects(spec: str) -> None:
    count = 10 if spec != "1-" else 0
    with pytest.raises(ConfigError) as info:
        chapter_selection(spec, count)
    assert repr(spec) in str(info.value)


def test_fingerprint(tmp_path: Path) -> None:
    path = build_epub(tmp_path / "b.epub", THREE)
    assert book_fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(BookError, match="file not found"):
        book_fingerprint(tmp_path / "missing.epub")


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample book not built")
def test_sample_book() -> None:
    book = read_book(SAMPLE)
    assert titles(book)[:2] == ["The Night the Light Went Out", "Captain Vale's Lamp Room"]
    assert len(book.chapters) == 8 and book.warnings == ()


# ---------------------------------------------------------------------------- corpus

corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")


def corpus_book(name: str) -> Book:
    return read_book(CORPUS / name)


@corpus
def test_corpus_alice() -> None:
    book = corpus_book("gutenberg-pg11-alice.epub")
    assert (book.title, book.author) == ("Alice's Adventures in Wonderland", "Lewis Carroll")
    assert len(book.chapters) == 12
    assert book.chapters[0].title == "CHAPTER I. Down the Rabbit-Hole"
    assert book.chapters[0].text.startswith("Alice was beginning to get very tired")
    assert book.chapters[11].title == "CHAPTER XII. Alice\u2019s Evidence"
    assert all("Gutenberg" not in c.text for c in book.chapters)


@corpus
@pytest.mark.slow
def test_corpus_frankenstein() -> None:
    book = corpus_book("gutenberg3-pg84-images-3.epub")
    assert titles(book) == [f"Letter {n}" for n in range(1, 5)] + [
        f"Chapter {n}" for n in range(1, 25)
    ]
    assert book.chapters[0].text.startswith("To Mrs. Saville, England.")
    assert book.chapters[4].text.startswith("I am by birth a Genevese")
    assert book.author == "Mary Wollstonecraft Shelley"
    assert all("Gutenberg" not in c.text for c in book.chapters)


@corpus
@pytest.mark.slow
def test_corpus_verwandlung_fragments() -> None:
    book = corpus_book("gutenberg3-pg22367-images-3.epub")
    assert titles(book) == ["I.", "II.", "III."]
    assert book.language == "de"
    assert book.chapters[0].text.startswith("Als Gregor Samsa eines Morgens")
    assert book.chapters[1].text.startswith("Erst in der Abenddämmerung")
    assert len({c.source.partition("#")[0] for c in book.chapters}) == 1


@corpus
@pytest.mark.slow
def test_corpus_gatsby() -> None:
    book = corpus_book("standardebooks-f-scott-fitzgerald_the-great-gatsby.epub")
    assert titles(book) == ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"]
    assert book.chapters[0].text.startswith("In my younger and more vulnerable years")
    assert "\ufeff" not in book.chapters[6].text
    everything = "\n".join(c.text for c in book.chapters)
    assert "Standard Ebooks" not in everything and "Zelda" not in everything


@corpus
def test_corpus_wasteland() -> None:
    book = corpus_book("idpf-wasteland.epub")
    assert titles(book) == [
        "I. THE BURIAL OF THE DEAD",
        "II. A GAME OF CHESS",
        "III. THE FIRE SERMON",
        "IV. DEATH BY WATER",
        "V. WHAT THE THUNDER SAID",
    ]
    assert book.chapters[0].text.startswith("April is the cruellest month, breeding")
    # Note references and line numbers are not text.
    assert "*" not in book.chapters[4].text and "420" not in book.chapters[4].text


@corpus
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ebooklib-test01.epub", ["Introduction", "About this book"]),
        ("imaginize-simple.epub", ["Chapter 1: The Beginning", "Chapter 2: The Middle"]),
        ("w3c-epubtests-pkg-spine-nonlinear-activation.epub", ["Link to main page"]),
    ],
)
def test_corpus_small_books(name: str, expected: list[str]) -> None:
    assert titles(corpus_book(name)) == expected


@corpus
def test_corpus_nav_without_toc_is_recovered() -> None:
    book = corpus_book("epubcheck-epub3-nav-toc-missing-error.epub")
    assert [(c.title, c.text) for c in book.chapters] == [("Loomings", "Call me Ishmael.")]
    assert any("navigation document" in w for w in book.warnings)


@corpus
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("epubcheck-epub3-ocf-zip-unreadable-empty-fatal.epub", "file is empty"),
        (
            "epubcheck-epub3-ocf-zip-unreadable-image-with-epub-extension-fatal.epub",
            "not a ZIP archive",
        ),
        ("epubcheck-epub3-ocf-container-file-missing-fatal.epub", "missing META-INF/container"),
        ("epubcheck-epub2-opf-spine-missing-error.epub", "no spine in the package document"),
    ],
)
def test_corpus_bad_input(name: str, expected: str) -> None:
    assert expected in reason(CORPUS / name)


# ---------------------------------------------------------------------------- chapter lists
# Exact chapter lists (title, first words) against gold built by reading the books
# (tests/data/gold/chapters) and against synthetic books reproducing issue 11's failures.

GOLD = ROOT / "tests" / "data" / "gold" / "chapters"


def chapter_list(book: Book, expected: Expected) -> list[tuple[str, str]]:
    """Each chapter's title and as many of its first words as the expected entry has."""
    words = [len(start.split()) for _, start in expected]
    words += [8] * (len(book.chapters) - len(words))  # extra chapters: enough words to show
    return [
        (c.title, " ".join(c.text.split()[:n])) for c, n in zip(book.chapters, words, strict=False)
    ]


def gold(name: str) -> tuple[Path, Expected]:
    data = json.loads((GOLD / f"{name}.json").read_text(encoding="utf-8"))
    return CORPUS / data["book"], [(c["title"], c["starts"]) for c in data["chapters"]]


GOLD_BOOKS = sorted(p.stem for p in GOLD.glob("*.json"))


def test_gold_files_cover_the_four_books() -> None:
    assert len(GOLD_BOOKS) >= 4
    for name in GOLD_BOOKS:
        _, expected = gold(name)
        assert expected and all(title and 3 <= len(start.split()) <= 8 for title, start in expected)


@corpus
@pytest.mark.parametrize("name", GOLD_BOOKS)
@pytest.mark.slow
def test_corpus_chapters_match_the_gold(name: str) -> None:
    path, expected = gold(name)
    assert chapter_list(read_book(path), expected) == expected


@corpus
@pytest.mark.parametrize("name", GOLD_BOOKS)
@pytest.mark.slow
def test_corpus_chapters_without_the_toc_come_from_the_text(name: str, tmp_path: Path) -> None:
    # Die Verwandlung is one file: without its TOC it was one chapter, "DIE: VERWANDLUNG".
    path, expected = gold(name)
    book = read_book(without_toc(path, tmp_path / path.name))
    assert chapter_list(book, expected) == expected


@pytest.mark.parametrize("case", list(KNOWN_CHAPTERS))
def test_known_chapters(case: str, tmp_path: Path) -> None:
    """No TOC (12 in-text headings: 1 chapter before), a credit line, a broken TOC nesting,
    a Spanish edition's legal pages, an imprint page: exactly the story's chapters."""
    path, expected = KNOWN_CHAPTERS[case](tmp_path / "book.epub")
    assert chapter_list(read_book(path), expected) == expected


def test_no_toc_one_document_with_chapter_headings(tmp_path: Path) -> None:
    path, _ = KNOWN_CHAPTERS["no TOC, one document"](tmp_path / "book.epub")
    book = read_book(path)
    assert titles(book) == [f"CHAPTER {r}" for r in ROMAN]
    assert all(not c.text.startswith(("CHAPTER", "THE TEST BOOK")) for c in book.chapters)
    assert "LONDON" not in book.chapters[0].text


def test_heading_split_keeps_subtitles_and_parts(tmp_path: Path) -> None:
    # A subtitle heading joins its chapter heading; "Chapter I" in two parts (one TOC entry
    # each) is told apart by the part's name.
    def part(n: int) -> str:
        return "".join(
            f"<h2>Chapter {r}</h2><h3>Title {r}</h3>{paragraphs(200, start=1000 * n)}"
            for r in ("I", "II")
        )

    path = build_epub(tmp_path / "b.epub", [("Part One", part(1)), ("Part Two", part(2))])
    assert titles(read_book(path)) == [
        "Part One \u2014 Chapter I: Title I",
        "Part One \u2014 Chapter II: Title II",
        "Part Two \u2014 Chapter I: Title I",
        "Part Two \u2014 Chapter II: Title II",
    ]


def test_chapters_named_by_the_toc_are_not_split_further(tmp_path: Path) -> None:
    # A chapter with numbered sections (a letter's "I.", "II.") stays one chapter.
    body = "".join(f"<p>{r}.</p>{paragraphs(80, start=n * 100)}" for n, r in enumerate(ROMAN[:3]))
    path = build_epub(tmp_path / "b.epub", [("Chapter 1", body), ("Chapter 2", "<p>Then.</p>")])
    assert titles(read_book(path)) == ["Chapter 1", "Chapter 2"]


def test_prose_that_mentions_a_chapter_is_no_heading(tmp_path: Path) -> None:
    body = "<p>Chapter I was the best of them all, he said.</p>" + paragraphs(3)
    body += "<p>Chapter two of his life began in Paris.</p>" + paragraphs(3, start=5)
    path = build_epub(tmp_path / "b.epub", [("", body)], toc="none")
    assert len(read_book(path).chapters) == 1


def test_front_matter_rules_apply_only_before_the_first_chapter(tmp_path: Path) -> None:
    # "El Rey", a dedication-like title and a credit-like opening are story after chapter 1.
    later = [
        ("Uno", "<p>Empieza la historia.</p>"),
        ("El Rey", "<p>El rey llegó al pueblo.</p>"),
        ("Al Duque", "<p>Carta al duque, escrita por Sancho.</p>"),
        ("Tres", "<p>Produced by the mill, the flour was sold by the sack.</p>"),
    ]
    path = build_epub(tmp_path / "b.epub", later, language="es")
    book = read_book(path)
    assert titles(book) == ["Uno", "El Rey", "Al Duque", "Tres"]
    assert book.chapters[3].text.startswith("Produced by the mill")


def test_plain_text_contents_page_is_dropped(tmp_path: Path) -> None:
    contents = "".join(f"<p>CHAPTER {r}.</p>" for r in ROMAN[:4])
    chapters = [Doc("Contents", contents, "contents-list.xhtml", heading=False, in_toc=False)]
    chapters += [Doc(f"CHAPTER {r}.", paragraphs(5, start=n * 10)) for n, r in enumerate(ROMAN[:2])]
    assert titles(read_book(build_epub(tmp_path / "b.epub", chapters))) == [
        "CHAPTER I.",
        "CHAPTER II.",
    ]


def test_credit_line_opening_the_first_chapter_file_is_dropped(tmp_path: Path) -> None:
    credit = "<p>Produced by Test Volunteer and the Online Distributed Proofreading Team.</p>"
    chapters = [
        ("CHAPTER I", credit + "<h1>CHAPTER I</h1><p>It began at sea.</p>"),
        ("CHAPTER II", "<p>Produced by the mill, the flour was sold.</p>"),
    ]
    book = read_book(build_epub(tmp_path / "b.epub", chapters, gutenberg=True))
    assert [c.text for c in book.chapters] == [
        "It began at sea.",
        "Produced by the mill, the flour was sold.",
    ]
