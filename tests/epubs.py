"""Build small EPUBs for tests, with ebooklib, plus helpers to damage them on purpose.

    build_epub(tmp_path / "book.epub", [("Chapter 1", "<p>It was a dark night.</p>")])

`chapters` items are `(title, body_html)` pairs or `Doc`s (for file names, linear="no",
leaving a document out of the TOC). Each chapter document gets an `<h1>` with its title
unless the body already starts with a heading or `heading=False`.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeAlias

from ebooklib import epub

# A TOC entry: (label, href) or (label, href, children); href is relative to the OPF, "" for
# a section heading without a target.
TocEntry: TypeAlias = tuple[str, str] | tuple[str, str, Sequence["TocEntry"]]

# A 1x1 transparent PNG: the smallest real image for covers and image-only pages.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)
JPEG_MAGIC = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"

GUTENBERG_HEADER = (
    '<section class="pg-boilerplate pgheader" id="pg-header">'
    "<h2>The Project Gutenberg eBook of {title}</h2>"
    "<div>This ebook is for the use of anyone anywhere in the United States.</div>"
    "<div><span>*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***</span></div></section>"
)
GUTENBERG_FOOTER = (
    "<div><span>*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***</span></div>"
    "<div>Updated editions will replace the previous one. Project Gutenberg is a registered "
    "trademark.</div>"
    '<h2 id="pg-footer-heading">THE FULL PROJECT GUTENBERG LICENSE</h2>'
    "<p>To protect the Project Gutenberg mission of promoting the free distribution of "
    "electronic works, you agree to comply with all the terms of the Full Project Gutenberg "
    "License available with this file.</p>"
)


@dataclass(frozen=True)
class Doc:
    """One spine document."""

    title: str
    body: str
    file_name: str = ""  # default: chapter-NN.xhtml
    linear: bool = True
    in_toc: bool = True
    heading: bool = True  # prepend <h1>title</h1> unless the body starts with a heading


def paragraphs(count: int, words: int = 12, start: int = 0) -> str:
    """`count` distinct <p> paragraphs, handy for long or numbered text."""
    return "".join(
        f"<p>Paragraph {start + i} {' '.join(['word'] * (words - 2))}.</p>" for i in range(count)
    )


def build_epub(
    path: Path | str,
    chapters: Sequence[tuple[str, str] | Doc] = (("Chapter 1", "<p>Once upon a time.</p>"),),
    *,
    title: str | None = "Test Book",
    author: str | None = "Test Author",
    language: str = "en",
    front_matter: bool = False,
    back_matter: bool = False,
    gutenberg: bool = False,
    toc: Literal["files", "none"] | Sequence[TocEntry] = "files",
    nav: bool = True,
    ncx: bool = True,
    images: Mapping[str, bytes] | None = None,
) -> Path:
    """Write an EPUB 3 at `path` and return the path.

    front_matter: cover (image only), title page, copyright page, dedication and a contents
    page before the chapters; back_matter: a colophon and an "About the Author" page after.
    gutenberg: a Project Gutenberg header (START marker) on the first document and a licence
    document (END marker) at the end. toc: "files" lists every document, "none" writes no
    TOC entries, or give explicit (nested) entries. images: extra manifest images by name.
    """
    path = Path(path)
    book = epub.EpubBook()
    book.set_identifier(f"urn:test:{path.stem}")
    if title is not None:
        book.set_title(title)
    book.set_language(language)
    if author is not None:
        book.add_author(author)

    docs: list[Doc] = []
    if front_matter:
        docs += _front_matter(title or "", author or "", chapters)
    for number, chapter in enumerate(chapters, start=1):
        doc = chapter if isinstance(chapter, Doc) else Doc(chapter[0], chapter[1])
        if not doc.file_name:
            doc = replace(doc, file_name=f"chapter-{number:02}.xhtml")
        docs.append(doc)
    if back_matter:
        docs += [
            Doc(
                "Colophon",
                '<section epub:type="colophon"><p>Set in Test Serif.</p></section>',
                "colophon.xhtml",
                heading=False,
            ),
            Doc("About the Author", "<p>The author lives in a test.</p>", "about.xhtml"),
        ]
    if gutenberg:
        upper = (title or "").upper()
        header = GUTENBERG_HEADER.format(title=title, upper=upper)
        docs[0] = replace(docs[0], body=header + _with_heading(docs[0]), heading=False)
        docs.append(Doc("", GUTENBERG_FOOTER.format(upper=upper), "licence.xhtml", heading=False))

    items = []
    for doc in docs:
        item = epub.EpubHtml(title=doc.title or "Untitled", file_name=doc.file_name, lang=language)
        item.content = f"<html><body>{_with_heading(doc)}</body></html>"
        book.add_item(item)
        items.append((doc, item))
    if front_matter:
        book.add_item(
            epub.EpubImage(
                uid="cover-image", file_name="cover.png", media_type="image/png", content=PNG
            )
        )
    for name, data in (images or {}).items():
        book.add_item(
            epub.EpubImage(
                uid=name.replace(".", "-"), file_name=name, media_type="image/png", content=data
            )
        )

    if toc == "files":
        book.toc = [
            epub.Link(doc.file_name, doc.title or doc.file_name, f"toc-{i}")
            for i, (doc, _) in enumerate(items)
            if doc.in_toc and doc.title
        ]
    elif toc == "none":
        book.toc = []
    else:
        book.toc = _toc(toc)
    if ncx:
        book.add_item(epub.EpubNcx())
    if nav:
        book.add_item(epub.EpubNav())
    book.spine = [item if doc.linear else (item, "no") for doc, item in items]
    epub.write_epub(str(path), book, {"raise_exceptions": True})
    return path


def _with_heading(doc: Doc) -> str:
    body = doc.body.lstrip()
    if not doc.heading or not doc.title or body[:3].lower() in {f"<h{n}" for n in range(1, 7)}:
        return body
    return f"<h1>{doc.title}</h1>{body}"


def _front_matter(title: str, author: str, chapters: Sequence[tuple[str, str] | Doc]) -> list[Doc]:
    links = "".join(
        f'<li><a href="chapter-{n:02}.xhtml">{c.title if isinstance(c, Doc) else c[0]}</a></li>'
        for n, c in enumerate(chapters, start=1)
    )
    return [
        Doc("Cover", '<div><img src="cover.png" alt="Cover"/></div>', "cover.xhtml", heading=False),
        Doc(
            "Title Page",
            f'<section epub:type="titlepage"><h1>{title}</h1><p>by {author}</p>'
            "<p>Test House Publishers, London</p></section>",
            "titlepage.xhtml",
            heading=False,
        ),
        Doc(
            "Copyright",
            f"<p>Copyright © 2024 {author}. All rights reserved.</p><p>ISBN 978-0-00-000000-0</p>",
            "copyright.xhtml",
        ),
        Doc(
            "Dedication",
            '<section epub:type="dedication"><p>For everyone who tests.</p></section>',
            "dedication.xhtml",
            heading=False,
        ),
        Doc("Contents", f"<ol>{links}</ol>", "contents.xhtml"),
    ]


def _toc(entries: Sequence[TocEntry]) -> list[object]:
    out: list[object] = []
    for n, entry in enumerate(entries):
        label, href = entry[0], entry[1]
        if len(entry) == 3:
            out.append((epub.Section(label, href), _toc(entry[2])))  # type: ignore[misc]
        else:
            out.append(epub.Link(href, label, f"{label}-{n}".replace(" ", "-")))
    return out


# ---------------------------------------------------------------------------- damage


def opf_name(path: Path | str) -> str:
    """The package document's name inside the ZIP (ebooklib writes EPUB/content.opf)."""
    with zipfile.ZipFile(path) as zf:
        return next(n for n in zf.namelist() if n.endswith(".opf"))


def rewrite_zip(
    src: Path | str,
    dst: Path | str,
    *,
    drop: Sequence[str] = (),
    replace: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Copy an EPUB, leaving out the `drop` members and swapping in `replace` contents."""
    new = dict(replace or {})
    with zipfile.ZipFile(src) as zin:
        members = [(i.filename, zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members:
            if name not in drop:
                zout.writestr(name, new.pop(name, data))
        for name, data in new.items():
            zout.writestr(name, data)
    return Path(dst)


def edit_member(path: Path | str, name: str, old: str, new: str) -> Path:
    """Replace text inside one member in place (e.g. delete the OPF's <spine>)."""
    with zipfile.ZipFile(path) as zf:
        text = zf.read(name).decode("utf-8")
    assert old in text, f"{old!r} not in {name}"
    return rewrite_zip(path, path, replace={name: text.replace(old, new)})


def write_zip(path: Path | str, files: Mapping[str, str | bytes]) -> Path:
    """A ZIP built by hand, for layouts ebooklib refuses to write."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return Path(path)


def inflate_member(
    src: Path | str, dst: Path | str, name: str, *, head: bytes, unit: bytes, size: int, tail: bytes
) -> Path:
    """Copy an EPUB with member `name` replaced by `head`, `unit` repeated to `size` bytes
    (less than one unit short), and `tail`, written in pieces: a zip bomb or a huge chapter
    that is never held in memory (highly repetitive, so 1 GiB deflates to ~1 MB)."""
    with zipfile.ZipFile(src) as zin:
        members = [(i.filename, zin.read(i)) for i in zin.infolist()]
    piece = unit * max(1, (1 << 20) // len(unit))
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for member, data in members:
            if member != name:
                zout.writestr(member, data)
                continue
            with zout.open(name, "w", force_zip64=True) as out:
                out.write(head)
                written = 0
                while written + len(piece) <= size:
                    out.write(piece)
                    written += len(piece)
                out.write(unit * ((size - written) // len(unit)))
                out.write(tail)
    return Path(dst)


def declare_size(path: Path | str, name: str, size: int) -> Path:
    """Make the ZIP's central directory and local header claim `name` is `size` bytes
    uncompressed (a lying header), leaving the data as it is. Not for ZIP64 members."""
    data = bytearray(Path(path).read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    encoded = info.filename.encode()
    # Local header: uncompressed size at offset 22; central directory entry: at offset 24.
    data[info.header_offset + 22 : info.header_offset + 26] = size.to_bytes(4, "little")
    start = 0
    while True:
        central = data.find(b"PK\x01\x02", start)
        if central < 0:
            raise ValueError(f"{name} not in the central directory")
        length = int.from_bytes(data[central + 28 : central + 30], "little")
        if bytes(data[central + 46 : central + 46 + length]) == encoded:
            data[central + 24 : central + 28] = size.to_bytes(4, "little")
            break
        start = central + 4
    Path(path).write_bytes(bytes(data))
    return Path(path)


# ---------------------------------------------------------------------------- known chapters
# Books whose chapter list is known by construction, each reproducing one way real books
# fool a chapter splitter (issue 11); shared by tests/test_book.py and benchmarks/chapters_gold.py.
# Each returns the path and the expected (title, first words) of every chapter.

Expected: TypeAlias = list[tuple[str, str]]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]


def without_toc(src: Path | str, dst: Path | str) -> Path:
    """Copy an EPUB with its table of contents emptied (NCX navMap and the nav's toc list),
    as books without a usable TOC come."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    changed: dict[str, str | bytes] = {}
    for name, data in members.items():
        if name.endswith(".ncx"):
            text = data.decode("utf-8")
            changed[name] = re.sub(r"(<navMap[^>]*>).*</navMap>", r"\1</navMap>", text, flags=re.S)
        elif b"<nav" in data and name.endswith((".xhtml", ".html", ".htm")):
            text = data.decode("utf-8")
            changed[name] = re.sub(
                r"(<nav[^>]*toc[^>]*>).*?</nav>",
                r'\1<ol><li><a href="#">&#160;</a></li></ol></nav>',
                text,
                count=1,
                flags=re.S,
            )
    return rewrite_zip(src, dst, replace=changed)


def _story(n: int, words: int = 40, count: int = 6) -> str:
    """Distinct story paragraphs for chapter `n`: its first words are 'Story of part n'."""
    return "".join(
        f"<p>Story of part {n} line {i} {' '.join(['and so on'] * (words // 3))}.</p>"
        for i in range(count)
    )


def no_toc_one_document(path: Path | str) -> tuple[Path, Expected]:
    """One spine document holding a title page and twelve "CHAPTER I" headings, no TOC."""
    body = (
        "<h1>THE TEST BOOK</h1><p>BY TEST AUTHOR</p><p>LONDON: TEST HOUSE &amp; CO.</p>"
        + "".join(f"<h2>CHAPTER {r}</h2>{_story(n)}" for n, r in enumerate(ROMAN, start=1))
    )
    doc = Doc("The Test Book", body, "book.xhtml", heading=False)
    expected = [(f"CHAPTER {r}", f"Story of part {n} line 0") for n, r in enumerate(ROMAN, 1)]
    return build_epub(path, [doc], title="The Test Book", toc="none"), expected


def no_toc_parts(path: Path | str) -> tuple[Path, Expected]:
    """One document, no TOC: a prologue, two books of "CHAPTER I", "CHAPTER II", an epilogue."""
    body = "<h1>THE TEST BOOK</h1><p>BY TEST AUTHOR</p><h2>PROLOGUE</h2>" + _story(0)
    expected: Expected = [("PROLOGUE", "Story of part 0 line 0")]
    for b, book in enumerate(("BOOK ONE", "BOOK TWO")):
        body += f"<h1>{book}</h1>"
        for c, r in enumerate(ROMAN[:2]):
            n = 2 * b + c + 1
            body += f"<h2>CHAPTER {r}</h2>{_story(n)}"
            expected.append((f"{book} \u2014 CHAPTER {r}", f"Story of part {n} line 0"))
    body += f"<h2>EPILOGUE</h2>{_story(9)}"
    expected.append(("EPILOGUE", "Story of part 9 line 0"))
    doc = Doc("", body, "book.xhtml", heading=False)
    return build_epub(path, [doc], title="The Test Book", toc="none"), expected


def no_toc_few_files(path: Path | str) -> tuple[Path, Expected]:
    """Three files of four chapters each, headed by plain paragraphs ("Chapter 1"), no TOC."""
    docs = [
        Doc(
            "",
            "".join(f"<p>Chapter {n}</p>{_story(n)}" for n in range(4 * f + 1, 4 * f + 5)),
            f"part{f}.xhtml",
            heading=False,
        )
        for f in range(3)
    ]
    expected = [(f"Chapter {n}", f"Story of part {n} line 0") for n in range(1, 13)]
    return build_epub(path, docs, toc="none"), expected


def credit_line_first(path: Path | str) -> tuple[Path, Expected]:
    """A Project Gutenberg book whose text opens with a "Produced by" credit line."""
    docs = [
        Doc(
            "",
            "<p>Produced by Test Volunteer, Other Helper and the Online Distributed "
            "Proofreading Team (this file was made from images generously made available "
            "by a test library).</p>",
            "credit.xhtml",
            heading=False,
            in_toc=False,
        ),
        *(Doc(f"CHAPTER {r}", _story(n)) for n, r in enumerate(ROMAN[:4], start=1)),
    ]
    expected = [(f"CHAPTER {r}", f"Story of part {n} line 0") for n, r in enumerate(ROMAN[:4], 1)]
    return build_epub(path, docs, gutenberg=True), expected


def broken_nesting(path: Path | str) -> tuple[Path, Expected]:
    """Two books of three chapters ("CHAPTER I" in each), the second book's entry wrongly
    nested under the first, as a long novel's NCX had it."""
    docs: list[Doc] = []
    expected: Expected = []
    children: list[TocEntry] = []
    for b, book in enumerate(("BOOK ONE: 1805", "BOOK TWO: 1806")):
        docs.append(Doc(book, "", f"book{b}.xhtml"))
        children.append((book, f"book{b}.xhtml"))
        for c, r in enumerate(ROMAN[:3]):
            n = 3 * b + c + 1
            docs.append(Doc(f"CHAPTER {r}", _story(n), f"b{b}c{c}.xhtml"))
            children.append((f"CHAPTER {r}", f"b{b}c{c}.xhtml"))
            expected.append((f"{book} \u2014 CHAPTER {r}", f"Story of part {n} line 0"))
    toc: list[TocEntry] = [(children[0][0], children[0][1], children[1:])]
    return build_epub(path, docs, toc=toc), expected


def spanish_front_matter(path: Path | str) -> tuple[Path, Expected]:
    """A Spanish classic's legal front matter (tasa, erratas, privilegio, aprobación) and
    dedication before a prologue and its chapters."""
    legal = "<p>Yo, Juan Gallo de Andrada, escribano de Cámara del Rey nuestro señor, doy fe.</p>"
    docs = [
        Doc("Tasa", legal * 3),
        Doc("Testimonio de las erratas", legal),
        Doc("El Rey", legal * 6),
        Doc("Aprobación", legal * 2),
        Doc(
            "Al Duque de Béjar",
            "<p>En fe del buen acogimiento y honra que hace Vuestra Excelencia a toda suerte "
            "de libros, he determinado de sacar a luz.</p>",
        ),
        Doc("Prólogo", _story(0)),
        *(Doc(f"Capítulo {r}", _story(n)) for n, r in enumerate(ROMAN[:3], start=1)),
    ]
    expected = [("Prólogo", "Story of part 0 line 0")] + [
        (f"Capítulo {r}", f"Story of part {n} line 0") for n, r in enumerate(ROMAN[:3], 1)
    ]
    return build_epub(path, docs, language="es", title="Libro de prueba"), expected


def part_pages_no_toc(path: Path | str) -> tuple[Path, Expected]:
    """Files, no TOC: a part-title page before each book's "CHAPTER I" and "CHAPTER II"."""
    docs: list[Doc] = []
    expected: Expected = []
    for b, book in enumerate(("BOOK ONE", "BOOK TWO")):
        docs.append(Doc("", f"<h1>{book}</h1>", f"part{b}.xhtml", heading=False))
        for c, r in enumerate(ROMAN[:2]):
            n = 2 * b + c + 1
            docs.append(Doc(f"CHAPTER {r}", _story(n), f"b{b}c{c}.xhtml"))
            expected.append((f"{book} \u2014 CHAPTER {r}", f"Story of part {n} line 0"))
    return build_epub(path, docs, toc="none"), expected


def part_headings_in_chapters(path: Path | str) -> tuple[Path, Expected]:
    """A TOC of chapters only ("CHAPTER I" twice, flat); each book's name is a heading
    opening its first chapter's file."""
    docs: list[Doc] = []
    expected: Expected = []
    for b, book in enumerate(("BOOK ONE: 1805", "BOOK TWO: 1806")):
        for c, r in enumerate(ROMAN[:2]):
            n = 2 * b + c + 1
            head = f"<h2>{book}</h2>" if c == 0 else ""
            body = f"{head}<h3>CHAPTER {r}</h3>{_story(n)}"
            docs.append(Doc(f"CHAPTER {r}", body, f"b{b}c{c}.xhtml", heading=False))
            expected.append((f"{book} \u2014 CHAPTER {r}", f"Story of part {n} line 0"))
    return build_epub(path, docs), expected


def spanish_two_parts(path: Path | str) -> tuple[Path, Expected]:
    """Both parts of a Spanish classic, each with its own legal pages, dedication and
    prologue, and chapters named alike in both; a flat TOC."""
    legal = "<p>Yo, Juan Gallo de Andrada, escribano de Cámara del Rey nuestro señor, doy fe.</p>"
    docs: list[Doc] = []
    expected: Expected = []
    for p, part in enumerate(("Primera parte", "Segunda parte")):
        docs += [
            Doc(part, ""),
            Doc("Tasa", legal * 2),
            Doc("Fe de erratas", legal),
            Doc("Aprobación", legal * 3),
            Doc("Dedicatoria al conde de Lemos", legal),
            Doc("Prólogo al lector", _story(10 * p)),
        ]
        # Labels repeated across the parts are told apart by the part's name.
        expected.append((f"{part} \u2014 Prólogo al lector", f"Story of part {10 * p} line 0"))
        for c, r in enumerate(ROMAN[:2]):
            n = 10 * p + c + 1
            docs.append(Doc(f"Capítulo {r}", _story(n)))
            expected.append((f"{part} \u2014 Capítulo {r}", f"Story of part {n} line 0"))
    return build_epub(path, docs, language="es", title="Libro de prueba"), expected


def imprint_page(path: Path | str) -> tuple[Path, Expected]:
    """A publisher's imprint page as its own file after the title page, no TOC."""
    docs = [
        Doc("", "<h1>THE TEST BOOK</h1><p>BY TEST AUTHOR</p>", "title.xhtml", heading=False),
        Doc(
            "",
            "<h2>MACMILLAN AND CO., LIMITED</h2><p>LONDON · BOMBAY · CALCUTTA</p><p>1911</p>",
            "p002.xhtml",
            heading=False,
        ),
        *(Doc(f"CHAPTER {r}", _story(n)) for n, r in enumerate(ROMAN[:3], start=1)),
    ]
    expected = [(f"CHAPTER {r}", f"Story of part {n} line 0") for n, r in enumerate(ROMAN[:3], 1)]
    return build_epub(path, docs, title="The Test Book", toc="none"), expected


KNOWN_CHAPTERS = {
    "no TOC, one document": no_toc_one_document,
    "no TOC, 3 files, <p> headings": no_toc_few_files,
    "no TOC, parts, prologue, epilogue": no_toc_parts,
    "'Produced by' credit line": credit_line_first,
    "broken TOC nesting": broken_nesting,
    "no TOC, part-title pages": part_pages_no_toc,
    "TOC of chapters only, part headings in the text": part_headings_in_chapters,
    "Spanish legal front matter": spanish_front_matter,
    "Spanish, two parts with legal pages each": spanish_two_parts,
    "publisher's imprint page": imprint_page,
}
