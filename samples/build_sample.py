"""Build imaginize's sample EPUB from its plain-text source.

Usage::

    python samples/build_sample.py [--source FILE] [--output FILE]

By default it reads ``samples/the-lanternfruit-orchard.txt`` and writes
``samples/the-lanternfruit-orchard.epub`` (the slug comes from the source file name).

Source format (documented for writers in ``samples/README.md``):

* lines starting with ``%`` are comments and are ignored everywhere;
* the header is a block of ``Key: value`` lines ending at the first blank line
  (``Title``, ``Author``, ``Language``, ``Identifier``, ``Date``, ``Rights``,
  ``Description``, ``Dedication``);
* ``# Chapter title`` starts a chapter; paragraphs are separated by blank lines,
  and lines inside one paragraph are joined with a space;
* ``*text*`` is emphasis, rendered as ``<em>``.

The output is deterministic: fixed identifier, item ids and ``dcterms:modified``
(taken from ``Date``), and the zip entries are rewritten with a fixed timestamp.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ebooklib import epub

SAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_SOURCE = SAMPLES_DIR / "the-lanternfruit-orchard.txt"

REQUIRED_KEYS = ("Title", "Author", "Language", "Identifier", "Date", "Rights", "Dedication")
_EMPHASIS = re.compile(r"\*([^*\n]+)\*")

CSS = """\
body { font-family: serif; line-height: 1.5; margin: 1em 5%; }
h1 { text-align: center; margin: 2em 0 1em; font-weight: normal; }
p { margin: 0; text-indent: 1.5em; }
h1 + p { text-indent: 0; }
section.titlepage, section.dedication { text-align: center; }
section.titlepage p, section.dedication p { text-indent: 0; margin: 1em 0; }
p.author { font-size: 1.2em; }
p.colophon { font-size: 0.8em; margin-top: 4em; }
p.dedication { font-style: italic; margin-top: 6em; }
"""


class SourceError(ValueError):
    """The story source file is malformed."""


@dataclass
class Chapter:
    title: str
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class Story:
    meta: dict[str, str]
    chapters: list[Chapter]

    @property
    def title(self) -> str:
        return self.meta["Title"]


def parse_source(text: str) -> Story:
    """Parse the documented plain-text format into a :class:`Story`."""
    lines = [line.rstrip() for line in text.splitlines() if not line.startswith("%")]
    meta: dict[str, str] = {}
    index = 0
    while index < len(lines) and lines[index].strip():
        key, sep, value = lines[index].partition(":")
        if not sep or not key.strip() or key.startswith("#"):
            raise SourceError(f"bad header line {lines[index]!r}; expected 'Key: value'")
        meta[key.strip()] = value.strip()
        index += 1
    missing = [key for key in REQUIRED_KEYS if not meta.get(key)]
    if missing:
        raise SourceError(f"header is missing: {', '.join(missing)}")

    chapters: list[Chapter] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            if not chapters:
                raise SourceError("text found before the first '# Chapter title' line")
            chapters[-1].paragraphs.append(" ".join(part.strip() for part in buffer))
            buffer.clear()

    for line in lines[index:]:
        if line.startswith("# "):
            flush()
            chapters.append(Chapter(title=line[2:].strip()))
        elif not line.strip():
            flush()
        else:
            buffer.append(line)
    flush()

    if not chapters:
        raise SourceError("no chapters found")
    for chapter in chapters:
        if not chapter.title or not chapter.paragraphs:
            raise SourceError(f"chapter {chapter.title!r} needs a title and at least one paragraph")
    return Story(meta=meta, chapters=chapters)


def inline_html(text: str) -> str:
    """Escape ``text`` for XHTML and turn ``*emphasis*`` into ``<em>``."""
    return _EMPHASIS.sub(r"<em>\1</em>", html.escape(text, quote=False))


def plain_text(text: str) -> str:
    """The text of a paragraph as a reader sees it (emphasis markers removed)."""
    return _EMPHASIS.sub(r"\1", text)


def chapter_file_name(number: int) -> str:
    return f"chapter-{number:02d}.xhtml"


def _document(
    book: epub.EpubBook, uid: str, file_name: str, title: str, body: str, css: epub.EpubItem
) -> epub.EpubHtml:
    doc = epub.EpubHtml(uid=uid, file_name=file_name, title=title, lang=book.language)
    doc.content = f"<html><head></head><body>{body}</body></html>"
    doc.add_item(css)
    book.add_item(doc)
    return doc


def build_book(story: Story) -> epub.EpubBook:
    """Assemble an :class:`ebooklib.epub.EpubBook` for ``story``."""
    meta = story.meta
    book = epub.EpubBook()
    book.set_identifier(meta["Identifier"])
    book.set_title(story.title)
    book.set_language(meta["Language"])
    book.add_author(meta["Author"])
    book.add_metadata("DC", "rights", meta["Rights"])
    book.add_metadata("DC", "date", meta["Date"])
    if meta.get("Description"):
        book.add_metadata("DC", "description", meta["Description"])

    css = epub.EpubItem(
        uid="style", file_name="style/book.css", media_type="text/css", content=CSS.encode()
    )
    book.add_item(css)

    title_page = _document(
        book,
        "titlepage",
        "titlepage.xhtml",
        "Title Page",
        '<section epub:type="titlepage" class="titlepage">'
        f"<h1>{inline_html(story.title)}</h1>"
        f'<p class="author">{inline_html(meta["Author"])}</p>'
        f'<p class="colophon">{inline_html(meta["Rights"])}</p>'
        "</section>",
        css,
    )
    dedication = _document(
        book,
        "dedication",
        "dedication.xhtml",
        "Dedication",
        '<section epub:type="dedication" class="dedication">'
        f'<p class="dedication">{inline_html(meta["Dedication"])}</p>'
        "</section>",
        css,
    )

    chapters: list[epub.EpubHtml] = []
    for number, chapter in enumerate(story.chapters, start=1):
        body = f"<h1>{inline_html(chapter.title)}</h1>" + "".join(
            f"<p>{inline_html(paragraph)}</p>" for paragraph in chapter.paragraphs
        )
        chapters.append(
            _document(
                book,
                f"chapter-{number:02d}",
                chapter_file_name(number),
                chapter.title,
                body,
                css,
            )
        )

    book.toc = [
        epub.Link(title_page.file_name, "Title Page", "toc-titlepage"),
        epub.Link(dedication.file_name, "Dedication", "toc-dedication"),
        *(
            epub.Link(doc.file_name, chapter.title, f"toc-{doc.id}")
            for doc, chapter in zip(chapters, story.chapters, strict=True)
        ),
    ]
    book.guide = [
        {"href": chapters[0].file_name, "title": "Begin Reading", "type": "text"},
    ]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [title_page, dedication, *chapters]
    return book


def _fixed_time(date: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(date, "%Y-%m-%d")
    except ValueError as exc:
        raise SourceError(f"Date must be YYYY-MM-DD, got {date!r}") from exc


def normalise_zip(path: Path, when: dt.datetime) -> None:
    """Rewrite the EPUB zip so every entry carries the same timestamp.

    ``mimetype`` stays first and uncompressed, as the OCF spec requires.
    """
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                entry = zipfile.ZipInfo(info.filename, date_time=stamp)
                entry.external_attr = 0o644 << 16
                if info.filename == "mimetype":
                    entry.compress_type = zipfile.ZIP_STORED
                else:
                    entry.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(entry, data, compresslevel=9)
        shutil.move(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build(source: Path = DEFAULT_SOURCE, output: Path | None = None) -> Path:
    """Build the EPUB for ``source`` and return the path written."""
    story = parse_source(source.read_text(encoding="utf-8"))
    if output is None:
        output = source.with_suffix(".epub")
    when = _fixed_time(story.meta["Date"])
    book = build_book(story)
    output.parent.mkdir(parents=True, exist_ok=True)
    epub.write_epub(str(output), book, {"mtime": when, "raise_exceptions": True})
    normalise_zip(output, when)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="story text file")
    parser.add_argument("--output", type=Path, default=None, help="EPUB to write")
    args = parser.parse_args(argv)
    try:
        path = build(args.source, args.output)
    except (OSError, SourceError) as exc:
        print(f"build_sample: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
