"""Plain-text extraction from EPUB content documents (XHTML), with lxml only.

A document becomes a list of `Block`s (one per paragraph-like run of text) in one linear
pass, so a 200,000-word file costs no more than reading it. Anchors (element ids) named by
the caller are recorded as block positions, which is what splitting at TOC #fragments needs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from lxml import etree
from lxml import html as lxml_html

EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"


def _names(*groups: str) -> frozenset[str]:
    """The space-separated names in `groups`: keeps the long tables below compact."""
    return frozenset(" ".join(groups).split())


# Elements whose start and end break the text into paragraphs (table cells only get a space).
BLOCK_TAGS = _names(
    "p div br hr h1 h2 h3 h4 h5 h6 blockquote pre center",
    "html body section article aside header footer main nav hgroup",
    "ul ol li dl dt dd table thead tbody tfoot tr caption",
    "figure figcaption address details summary dialog form fieldset",
    "legend",
)
HEADING_TAGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6"))
# Never text for a reader: code, metadata, ruby annotations, embedded graphics.
SKIP_TAGS = _names(
    "head script style template noscript rt rp svg math object",
    "iframe",
)
# Page and line numbers and Gutenberg boilerplate sit inline in the text; quotes must not.
SKIP_CLASSES = _names(
    "pagenum pageno page-number x-ebookmaker-pageno lnum linenum line-number",
    "pg-boilerplate",
)
SKIP_TYPES = frozenset(("noteref", "pagebreak", "page-list"))
CELL_TAGS = frozenset(("td", "th"))

_WS = re.compile(r"\s+")
# Invisible characters that would break verbatim quote matching (soft hyphen, zero-width
# space, word joiner, BOM); ZWJ/ZWNJ stay, scripts need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>")


@dataclass(frozen=True, slots=True)
class Block:
    """One paragraph of text with what is known about the elements around it."""

    text: str
    heading: bool = False
    # Characters of `text` that sit inside <a href>: tables of contents are mostly links.
    link_chars: int = 0
    # epub:type and role tokens of the elements containing the block's first text.
    types: frozenset[str] = frozenset()


@dataclass
class DocText:
    blocks: list[Block] = field(default_factory=list)
    # anchor id -> index of the first block at or after it
    anchors: dict[str, int] = field(default_factory=dict)


class XhtmlError(ValueError):
    """The document cannot be parsed even leniently."""


def parse(content: bytes) -> etree._Element:
    """Parse XHTML strictly as XML, else leniently as HTML (tag soup, HTML entities)."""
    try:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
        )
        root = etree.fromstring(content, parser)
        if root is not None:
            return root
    except etree.XMLSyntaxError:
        pass
    try:
        text = _XML_DECL.sub(b"", content).decode("utf-8")
    except UnicodeDecodeError:
        text = _XML_DECL.sub(b"", content).decode("cp1252", errors="replace")
    if not text.strip():
        raise XhtmlError("empty document")
    try:
        return lxml_html.document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise XhtmlError(str(exc)) from exc


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def semantic_types(el: etree._Element) -> frozenset[str]:
    """epub:type tokens (XML or tag-soup spelling) plus ARIA doc-* roles without the prefix."""
    raw = el.get(EPUB_TYPE) or el.get("epub:type") or ""
    role = el.get("role") or ""
    if not raw and not role:
        return frozenset()
    tokens = {t.lower() for t in raw.split()}
    tokens.update(r.lower().removeprefix("doc-") for r in role.split())
    return frozenset(tokens)


def _skipped(el: etree._Element, name: str) -> bool:
    if name in SKIP_TAGS or el.get("hidden") is not None:
        return True
    classes = el.get("class")
    if classes and not SKIP_CLASSES.isdisjoint(classes.lower().split()):
        return True
    return not SKIP_TYPES.isdisjoint(semantic_types(el))


class _Builder:
    """Accumulates inline text into blocks; one instance per document."""

    def __init__(self) -> None:
        self.doc = DocText()
        self.pieces: list[str] = []
        self.link_chars = 0
        self.types: frozenset[str] = frozenset()
        self.heading = False
        self.started = False

    def add(
        self, text: str | None, *, in_link: bool, in_heading: bool, types: frozenset[str]
    ) -> None:
        if not text:
            return
        if not self.started and not text.isspace():
            # The first visible text of the block decides its heading flag and types.
            self.started = True
            self.heading = in_heading
            self.types = types
        self.pieces.append(text)
        if in_link:
            self.link_chars += len(text.strip())

    def flush(self) -> None:
        if self.pieces:
            text = _WS.sub(" ", "".join(self.pieces).translate(_INVISIBLE)).strip()
            if text:
                self.doc.blocks.append(Block(text, self.heading, self.link_chars, self.types))
        self.pieces = []
        self.link_chars = 0
        self.heading = False
        self.started = False
        self.types = frozenset()

    def anchor(self, ident: str) -> None:
        # An anchor inside a paragraph still starts the next segment at a block boundary.
        self.flush()
        self.doc.anchors.setdefault(ident, len(self.doc.blocks))


def extract(content: bytes, anchors: Collection[str] = ()) -> DocText:
    """Walk the body once, turning block elements into paragraph breaks."""
    root = parse(content)
    body = next((el for el in root.iter() if _tag(el) == "body"), root)
    out = _Builder()
    wanted = set(anchors)

    def mark(el: etree._Element) -> None:
        for key in ("id", "name"):
            ident = el.get(key)
            if ident and ident in wanted:
                out.anchor(ident)

    # Explicit stack instead of recursion: deeply nested tag soup must not hit the limit.
    # Each frame: element, child iterator, cumulative types, in-link, in-heading.
    stack: list[tuple[etree._Element, Iterator[etree._Element], frozenset[str], bool, bool]] = []

    def enter(el: etree._Element, name: str, parent_types: frozenset[str], link: bool, hd: bool):
        own = semantic_types(el)
        types = parent_types | own if own else parent_types
        link = link or (name == "a" and el.get("href") is not None)
        hd = hd or name in HEADING_TAGS
        if name in BLOCK_TAGS:
            out.flush()
        elif name in CELL_TAGS:
            out.add(" ", in_link=False, in_heading=hd, types=types)
        mark(el)
        out.add(el.text, in_link=link, in_heading=hd, types=types)
        stack.append((el, iter(el), types, link, hd))

    enter(body, _tag(body), frozenset(), False, False)
    while stack:
        el, children, types, link, hd = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            if _tag(el) in BLOCK_TAGS:
                out.flush()
            if stack:
                _, _, ptypes, plink, phd = stack[-1]
                out.add(el.tail, in_link=plink, in_heading=phd, types=ptypes)
            continue
        if child.tag is etree.Entity:
            # Undeclared entities (&nbsp; with no DTD loaded) stay as nodes: resolve here.
            out.add(html.unescape(child.text or ""), in_link=link, in_heading=hd, types=types)
            out.add(child.tail, in_link=link, in_heading=hd, types=types)
            continue
        if not isinstance(child.tag, str):  # comment or processing instruction
            out.add(child.tail, in_link=link, in_heading=hd, types=types)
            continue
        name = _tag(child)
        if _skipped(child, name):
            # Anchors inside skipped parts (a licence heading) still mark a position.
            for inner in child.iter():
                if isinstance(inner.tag, str):
                    mark(inner)
            if name in BLOCK_TAGS:
                out.flush()
            out.add(child.tail, in_link=link, in_heading=hd, types=types)
            continue
        enter(child, name, types, link, hd)
    out.flush()
    return out.doc


_TAG_CACHE: dict[str, str] = {}


def _tag(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    name = _TAG_CACHE.get(tag)
    if name is None:
        name = _TAG_CACHE[tag] = local_name(tag)
    return name


# ---------------------------------------------------------------------------- story or not
# The rest is about deciding which text is story: pure functions of blocks and labels.

# Semantics that always mark non-story matter, wherever they sit.
NON_STORY = _names(
    "cover titlepage halftitlepage copyright-page imprint colophon toc landmarks",
    "loi lot loa lov index errata other-credits credits contributors revision-history",
    "bibliography glossary seriespage acknowledgments acknowledgements",
    "endnotes footnotes rearnotes endnote footnote rearnote",
)
# Front matter only when nothing around says it is story content (an epigraph in a chapter).
FRONT_ONLY = frozenset(("dedication", "epigraph"))
STORY = _names("chapter bodymatter part division volume prologue epilogue subchapter")
NO_TEXT = "no text"
# A "cover" of 3,000 words is not a cover: name-based guesses only apply to small segments.
SMALL = 20_000

_FRONT_TITLE = re.compile(
    r"(front )?cover|title ?page|half ?title( page)?|copyright( page)?|imprint|colophon|"
    r"uncopyright|(table of )?contents|toc|dedication|epigraph|(list of )?illustrations|"
    r"inhalt(sverzeichnis)?|table des mati[eè]res|sommaire|[ií]ndice"
)
_BACK_TITLE = re.compile(
    r"(the )?(full )?licen[cs]e( information| agreement)?|.*project gutenberg.*licen[cs]e.*|"
    r"(end|foot)?notes|index|bibliography|glossary|acknowledge?ments|"
    r"about the (authors?|publisher)|(also|other books) by .*"
)
_FRONT_FILE = re.compile(
    r"(cover(-?page)?|wrap\d*|title(-?page)?|half-?title(-?page)?|copyright(-?page)?|imprint|"
    r"colophon|uncopyright|toc|contents|nav|dedication|epigraph|licen[cs]e|"
    r"about-?the-?author|acknowledge?ments)([-_]?\d+)?"
)
_COPYRIGHT = re.compile(r"all rights reserved|\bISBN\b|©", re.IGNORECASE)
_PG_START = re.compile(r"\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_PG_END = re.compile(
    r"\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|^End of (the )?Project Gutenberg",
    re.IGNORECASE,
)
_MARKER_MAX = 400  # markers are short lines; a long paragraph quoting one is text
_TOKENS = re.compile(r"\w+")


@dataclass
class Segment:
    """A candidate chapter: the blocks from one cut (TOC entry or file start) to the next."""

    blocks: list[Block]
    label: str = ""  # the TOC label, if a TOC entry starts it
    parent: str = ""  # the label of the TOC section around that entry
    source: str = ""  # href or href#fragment
    at_file_start: bool = False
    marks: frozenset[str] = frozenset()  # guide/landmarks types pointing at its start
    continues: bool = False  # a further file of the text after a cut, not a cut itself


def story_blocks(blocks: list[Block]) -> list[Block]:
    """Drop blocks inside elements marked as non-story (title page, notes, ...)."""
    return [
        b
        for b in blocks
        if NON_STORY.isdisjoint(b.types) and (FRONT_ONLY.isdisjoint(b.types) or b.types & STORY)
    ]


def strip_gutenberg(segments: list[Segment]) -> None:
    """Drop all before Project Gutenberg's START marker and all from its END marker on."""
    has_start = any(
        len(b.text) < _MARKER_MAX and _PG_START.search(b.text) for s in segments for b in s.blocks
    )
    state = "before" if has_start else "in"
    for seg in segments:
        kept: list[Block] = []
        for block in seg.blocks:
            marker = len(block.text) < _MARKER_MAX
            if state == "before":
                if marker and _PG_START.search(block.text):
                    state = "in"
            elif state == "in":
                if marker and _PG_END.search(block.text):
                    state = "after"
                else:
                    kept.append(block)
        seg.blocks = kept


def tokens(text: str) -> list[str]:
    return _TOKENS.findall(text.casefold())


def contains(haystack: list[str], needle: list[str]) -> bool:
    """Whether `needle` occurs as a contiguous, non-empty run of tokens in `haystack`."""
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def drop_reason(seg: Segment, book_title: str) -> str | None:
    """Why a segment is not story text, or None to keep it."""
    label = seg.label or next((b.text for b in seg.blocks if b.heading), "")
    words = tokens(label)
    # A part-title page holds nothing but its own name, whatever the markup.
    if all(b.heading or contains(words, tokens(b.text)) for b in seg.blocks):
        return NO_TEXT
    chars = sum(len(b.text) for b in seg.blocks)
    small = chars < SMALL
    if seg.marks and small:
        return "marked " + ", ".join(sorted(seg.marks))
    stem = seg.source.partition("#")[0].rpartition("/")[2].rpartition(".")[0].lower()
    if seg.at_file_start and small and _FRONT_FILE.fullmatch(stem):
        return f"file name {stem}"
    if _BACK_TITLE.fullmatch(" ".join(words)) or (
        small and _FRONT_TITLE.fullmatch(" ".join(words))
    ):
        return f"title {label!r}"
    if sum(b.link_chars for b in seg.blocks) * 2 > chars:
        return "mostly links (a table of contents)"
    # A title page: a few short lines (title, author, publisher) under the book's title.
    title = tokens(book_title)
    if (
        chars < 1000
        and (contains(title, words) or contains(words, title))
        and all(len(b.text.split()) <= 12 for b in seg.blocks)
    ):
        return "title page"
    text = "\n".join(b.text for b in seg.blocks)
    if chars < 2000 and _COPYRIGHT.search(text):
        return "copyright page"
    if text.count("Project Gutenberg") >= 3 and re.search(r"licen[cs]e", text, re.IGNORECASE):
        return "Project Gutenberg licence"
    return None


def title_and_text(seg: Segment) -> tuple[str, str]:
    """The chapter title (label, else leading headings) and its text without that heading."""
    blocks = list(seg.blocks)
    title = seg.label
    if title:
        wanted = tokens(title)
        while len(blocks) > 1 and blocks[0].heading and contains(wanted, tokens(blocks[0].text)):
            blocks.pop(0)
    else:
        lead: list[str] = []
        while len(blocks) > 1 and blocks[0].heading and len(lead) < 3:
            lead.append(blocks.pop(0).text)
        title = join_headings(lead)
    return shorten(title), "\n\n".join(b.text for b in blocks)


def join_headings(parts: list[str]) -> str:
    """Join leading headings: ("CHAPTER I.", "Down the Rabbit-Hole") -> one title."""
    title = ""
    for part in parts:
        if not title:
            title = part
        else:
            title += (" " if title[-1] in ".:;!?\u2014\u2013-" else ": ") + part
    return title


def shorten(title: str, limit: int = 120) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "\u2026"
