"""Plain-text extraction from EPUB content documents (XHTML), with lxml only.

A document becomes a list of `Block`s (one per paragraph-like run of text) in one linear
pass, so a 200,000-word file costs no more than reading it. Anchors (element ids) named by
the caller are recorded as block positions, which is what splitting at TOC #fragments needs.
"""

from __future__ import annotations

import codecs
import html
import html.entities
import itertools
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

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


# An element, or the attributes a parser event gives: both answer .get(name).
_Attributes = etree._Element | Mapping[str, str]


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def semantic_types(el: _Attributes) -> frozenset[str]:
    """epub:type tokens (XML or tag-soup spelling) plus ARIA doc-* roles without the prefix."""
    raw = el.get(EPUB_TYPE) or el.get("epub:type") or ""
    role = el.get("role") or ""
    if not raw and not role:
        return frozenset()
    tokens = {t.lower() for t in raw.split()}
    tokens.update(r.lower().removeprefix("doc-") for r in role.split())
    return frozenset(tokens)


def _skipped(el: _Attributes, name: str) -> bool:
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
        self.size = 0  # characters in `pieces`
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
        self.size += len(text)
        if in_link:
            self.link_chars += len(text.strip())
        while self.size > MAX_BLOCK:
            self._cut()

    def _cut(self) -> None:
        """Make the first MAX_BLOCK characters of an over-long run of text a block of their
        own, ending at a blank where there is one in their second half."""
        text = "".join(self.pieces)
        end = max(text.rfind(" ", 0, MAX_BLOCK), text.rfind("\n", 0, MAX_BLOCK))
        end = end if end > MAX_BLOCK // 2 else MAX_BLOCK
        head = _WS.sub(" ", text[:end].translate(_INVISIBLE)).strip()
        links = min(self.link_chars, len(head))
        if head:
            self.doc.blocks.append(Block(head, self.heading, links, self.types))
        self.link_chars -= links
        self.pieces = [text[end:]]
        self.size = len(self.pieces[0])

    def flush(self) -> None:
        if not self.pieces:
            return  # nothing was added since the last flush: nothing to reset either
        text = _WS.sub(" ", "".join(self.pieces).translate(_INVISIBLE)).strip()
        if text:
            self.doc.blocks.append(Block(text, self.heading, self.link_chars, self.types))
        self.pieces = []
        self.size = 0
        self.link_chars = 0
        self.heading = False
        self.started = False
        self.types = frozenset()

    def anchor(self, ident: str) -> None:
        # An anchor inside a paragraph still starts the next segment at a block boundary.
        self.flush()
        self.doc.anchors.setdefault(ident, len(self.doc.blocks))


# A document's bytes, opened afresh by each call: parsing may start over (XML, then HTML).
Chunks = Callable[[], Iterable[bytes]]
# Longer runs of text without a paragraph break are cut at a space into several blocks, so
# no paragraph (one whole document without markup, say) is held as one giant string.
MAX_BLOCK = 1 << 20


def extract(content: bytes | Chunks, anchors: Collection[str] = ()) -> DocText:
    """One pass over the document's parser events (no tree is built, so memory stays in
    proportion to the text, however large or deeply nested the markup), turning block
    elements into paragraph breaks. Strict XML first, else lenient HTML, as `parse` does."""
    chunks: Chunks = (lambda: (content,)) if isinstance(content, bytes) else content
    walker = _Walker(anchors, xml=True)
    parser = etree.XMLParser(
        target=walker, resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
    )
    try:
        for chunk in _html_entities(chunks()):
            parser.feed(chunk)
        parser.close()
        return walker.result()
    except etree.XMLSyntaxError:
        pass
    try:
        return _extract_html(chunks, anchors, "utf-8")
    except UnicodeDecodeError:
        return _extract_html(chunks, anchors, "cp1252")


def _extract_html(chunks: Chunks, anchors: Collection[str], encoding: str) -> DocText:
    walker = _Walker(anchors, xml=False)
    parser = etree.HTMLParser(target=walker, huge_tree=True)
    decoder = codecs.getincrementaldecoder(encoding)("strict" if encoding == "utf-8" else "replace")
    first = True
    visible = False
    try:
        for chunk in itertools.chain(chunks(), [None]):  # None: the end, flush the decoder
            text = decoder.decode(b"", final=True) if chunk is None else decoder.decode(chunk)
            if first and text:
                # lxml refuses text that declares its encoding; it was decoded already.
                text = _XML_DECL_TEXT.sub("", text)
                first = False
            visible = visible or not text.isspace()
            if text:
                parser.feed(text)
        if not visible:
            raise XhtmlError("empty document")
        parser.close()
    except UnicodeDecodeError:
        raise  # not UTF-8: the caller starts over as cp1252
    except (etree.LxmlError, ValueError) as exc:
        raise XhtmlError(str(exc)) from exc
    if not walker.started:
        raise XhtmlError("Document is empty")
    return walker.result()


_XML_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{0,31});")
_XML_ENTITIES = frozenset((b"amp", b"lt", b"gt", b"quot", b"apos"))


def _entity_reference(match: re.Match[bytes]) -> bytes:
    name = match[1]
    if name in _XML_ENTITIES:
        return match[0]
    text = html.entities.html5.get(name.decode() + ";")
    if text is None:
        return b"&amp;" + match[0][1:]  # kept as written, as html.unescape keeps it
    return "".join(f"&#{ord(c)};" for c in text).encode()


def _html_entities(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """XHTML using HTML's named entities (&nbsp; with no DTD loaded) as character references:
    an XML parser with a target drops a reference it cannot resolve without a word."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        # A reference cut by the chunk boundary waits for the next chunk.
        cut = data.rfind(b"&", max(0, len(data) - 34))
        if cut >= 0 and b";" not in data[cut:]:
            data, carry = data[:cut], data[cut:]
        else:
            carry = b""
        yield _ENTITY.sub(_entity_reference, data)
    if carry:
        yield _ENTITY.sub(_entity_reference, carry)


# One open element: local name, epub:type/role tokens so far, inside a link, inside a heading.
_Frame = tuple[str, frozenset[str], bool, bool]


class _Walker:
    """A parser target: start/data/end events become blocks in document order.

    Only the first <body> counts when there is one (text before it is dropped when it
    starts, everything after it ends is ignored); otherwise the whole document. Text
    between two events is one piece, the element's text or a child's tail.
    """

    def __init__(self, anchors: Collection[str], *, xml: bool) -> None:
        self.out = _Builder()
        self.wanted = set(anchors)
        self.xml = xml
        self.stack: list[_Frame] = []
        self.pending: list[str] = []
        self.pending_size = 0
        self.skipping = 0  # depth inside a skipped element (script, page number, ...)
        self.skip_block = False
        self.in_body = False
        self.done = False
        self.started = False

    def result(self) -> DocText:
        self._emit()
        self.out.flush()
        return self.out.doc

    def _emit(self) -> None:
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending = []
        self.pending_size = 0
        if self.stack and not self.skipping and not self.done:
            _, types, link, hd = self.stack[-1]
            self.out.add(text, in_link=link, in_heading=hd, types=types)

    def _mark(self, attrib: Mapping[str, str]) -> None:
        for key in ("id", "name"):
            ident = attrib.get(key)
            if ident and ident in self.wanted:
                self.out.anchor(ident)

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        self._emit()
        self.started = True
        name = _tag_name(tag)
        # lxml's attribute proxy answers .get() slowly (through Mapping): copy it once.
        attrib = dict(attrib) if attrib else _NO_ATTRIBUTES
        if name == "body" and not self.in_body:
            # The walk is of the body alone: forget what came before it.
            self.in_body = True
            self.out = _Builder()
            self.stack = []
            self.skipping = 0
        elif self.done:
            return
        elif self.skipping:
            # Anchors inside skipped parts (a licence heading) still mark a position.
            self.skipping += 1
            self._mark(attrib)
            return
        elif self.stack and _skipped(attrib, name):
            self.skipping = 1
            self.skip_block = name in BLOCK_TAGS
            self._mark(attrib)
            return
        parent_types, link, hd = self.stack[-1][1:] if self.stack else (frozenset(), False, False)
        own = semantic_types(attrib) if attrib else None
        types = parent_types | own if own else parent_types
        link = link or (name == "a" and attrib.get("href") is not None)
        hd = hd or name in HEADING_TAGS
        if name in BLOCK_TAGS:
            self.out.flush()
        elif name in CELL_TAGS:
            self.out.add(" ", in_link=False, in_heading=hd, types=types)
        if attrib:
            self._mark(attrib)
        self.stack.append((name, types, link, hd))

    def end(self, tag: str) -> None:
        self._emit()
        if self.done:
            return
        if self.skipping:
            self.skipping -= 1
            if not self.skipping and self.skip_block:
                self.out.flush()
            return
        if not self.stack:
            return
        name = self.stack.pop()[0]
        if name in BLOCK_TAGS:
            self.out.flush()
        if not self.stack:
            # The walked element (the body, else the root) ended: its tail is not text.
            self.done = True

    def data(self, text: str) -> None:
        self.pending.append(text)
        self.pending_size += len(text)
        if self.pending_size > MAX_BLOCK:
            self._emit()

    def comment(self, text: str) -> None:
        # A comment splits the text around it into two pieces in an HTML tree; the XML
        # parser drops comments and joins that text (what a tree walk saw).
        if not self.xml:
            self._emit()

    def pi(self, target: str, data: str | None = None) -> None:
        self._emit()

    def close(self) -> None:
        self._emit()


_TAG_CACHE: dict[str, str] = {}
_NO_ATTRIBUTES: Mapping[str, str] = {}


def _tag_name(tag: str) -> str:
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

# Front matter only before the first chapter, where a title says so: a Spanish (or French,
# German) edition's legal pages, dedications to a patron, notes about the transcription.
_FRONT_LEGAL = re.compile(
    r"tasa|(testimonio de las |fe de )?erratas|(aprobaci[oó]n|privilegio|licencia|censura|"
    r"dedicatoria|approbation|privil[eè]ge|widmung|impressum)e?s?\b.*|el rey|"
    r"(suma del )?privilegio.*|imprimatur|nihil obstat|legal notice|disclaimer|"
    r"(transcriber|publisher|editor)( s|s)? notes?|"
    r"(a|al|a la|to|to the|à|an|an den)\s+(duque|duquesa|conde|condesa|marqu[eé]s|rey|reina|"
    r"pr[ií]ncipe|excelent[ií]sim[oa]|ilustr[ií]sim[oa]|duke|duchess|earl|lord|lady|count|"
    r"countess|right honou?rable|herzog|graf|fürst)\b.*"
)
# A credit for the transcription ("Produced by ... and the Online Distributed Proofreading
# Team"), which older Project Gutenberg books put after the START marker, as text.
_CREDIT = re.compile(
    r"(this (e-?book|e-?text|file|edition) (was|has been|is) )?(e-?text )?"
    r"(produced|prepared|transcribed|digiti[sz]ed|scanned|proof-?read|created|converted|"
    r"html version)\b.{0,300}?\bby\b",
    re.IGNORECASE,
)
_CREDIT_MAX = 600
# A publisher's imprint: "MACMILLAN AND CO., LIMITED", "KURT WOLFF VERLAG", "Printed by".
# Case matters: "Press on" in a short poem is no imprint, "The Riverside Press" is.
_IMPRINT = re.compile(
    r"(\b(Co|CO|Ltd|LTD)\.|\b(Company|COMPANY|Limited|LIMITED|Publishers?|PUBLISHERS?|"
    r"Publishing|PUBLISHING|Verlag|VERLAG|Editorial|EDITORIAL|[ÉE]ditions?|[ÉE]DITIONS?|"
    r"Editore|EDITORE|Imprenta|IMPRENTA|Librer[ií]a|LIBRER[IÍ]A|& Sons|& SONS)\b|"
    r"\b[A-Z][\w.]* (Press|PRESS)\b|\b(Printed|PRINTED) (in|by|for|IN|BY|FOR)\b|"
    r"\bGedruckt\b|\bDruck von\b)"
)
# In-text chapter headings. A keyword and a number: "CHAPTER I.", "Chapter 12: Title",
# "Capítulo primero", "Kapitel 3", "Chapter the First", "Erstes Kapitel", "Letter 4".
_NUMBER = (
    r"([ivxlcdm]+|\d{1,4}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
    r"twelfth|last|final|primero|segundo|tercero|cuarto|quinto|sexto|s[eé]ptimo|octavo|"
    r"noveno|d[eé]cimo|und[eé]cimo|duod[eé]cimo|[uú]ltimo|premier|deuxi[eè]me|troisi[eè]me|"
    r"primo|secondo|terzo|erstes|zweites|drittes|viertes|f[uü]nftes|letztes)"
)
_CHAPTER_WORD = (
    r"(chapter|chap\.|chapitre|cap[ií]tulo|cap\.|capitolo|kapitel|hoofdstuk|rozdzia[łl]|"
    r"глава|letter|lettre|carta|brief)"
)
_KEYWORD = rf"({_CHAPTER_WORD}\s+(the\s+)?{_NUMBER}|{_NUMBER}\s+{_CHAPTER_WORD})"
# In a paragraph the number must end the line or a punctuation mark follow ("Chapter I was
# ..." is prose); in a heading element a title may follow after a space.
_KEYWORD_LINE = re.compile(
    _KEYWORD + r"(\s*[.:\-\u2013\u2014)]\s*(\S.*)?)?", re.IGNORECASE | re.DOTALL
)
_KEYWORD_HEADING = re.compile(_KEYWORD + r"(\W.*)?", re.IGNORECASE | re.DOTALL)
# A part of the book rather than a chapter: "BOOK ONE: 1805", "Part II", "First Epilogue",
# "Primera parte", "Erster Teil", "Volume 2".
_ORDINAL = (
    r"(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final|primera|"
    r"segunda|tercera|cuarta|quinta|erster|zweiter|dritter|vierter|f[uü]nfter|letzter|"
    r"premi[eè]re|deuxi[eè]me|troisi[eè]me)"
)
_PART_WORD = r"(book|part|volume|vol\.|tome|livre|libro|parte|teil|buch|band|tomo)"
_PART = re.compile(
    rf"({_ORDINAL}\s+({_PART_WORD}|epilogue)|{_PART_WORD}\s+(the\s+)?{_NUMBER})(\W.*)?",
    re.IGNORECASE | re.DOTALL,
)
# Named sections a book without a TOC is cut at too, when a heading element holds them.
_NAMED = re.compile(
    r"(prologue|prolog|epilogue|epilog|preface|introduction|foreword|afterword|conclusion|"
    r"postscript|pr[oó]logo|ep[ií]logo|vorwort|nachwort|einleitung|pr[ée]face|avant-propos|"
    r"[ée]pilogue)([.:\-\u2013\u2014]\s*\S.*)?\.?",
    re.IGNORECASE | re.DOTALL,
)
_ROMAN = re.compile(r"(?=[IVXLC])(X{0,3}|XL|L|LX{0,3}|XC)(IX|IV|V?I{0,3})\.?")
_NUMBERED_TITLE = re.compile(r"([IVXLC]+|\d{1,3})\.\s+\S.{0,100}")
_HEADING_MAX = 200  # characters: a heading, however long its title, is not a paragraph


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
    headings = len({b.text for b in seg.blocks if chapter_heading(b.text, b.heading)})
    if headings >= 3 and headings * 5 >= len(seg.blocks) * 3 and small:
        return "a list of chapter headings (a table of contents)"
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


def front_reason(seg: Segment) -> str | None:
    """Why a segment before the first chapter is front matter that only there is: legal
    pages and dedications by their title, a publisher's imprint page."""
    chars = sum(len(b.text) for b in seg.blocks)
    if chars >= SMALL:
        return None
    label = seg.label or next((b.text for b in seg.blocks if b.heading), "")
    if _FRONT_LEGAL.fullmatch(" ".join(tokens(label))):
        return f"front matter {label!r}"
    if (
        chars < 1000
        and all(len(b.text.split()) <= 12 for b in seg.blocks)
        and any(_IMPRINT.search(b.text) for b in seg.blocks)
    ):
        return "a publisher's imprint"
    return None


def _credit(text: str) -> bool:
    """A credit line: "Produced by" and the like, then names ("David Widger", "Judith Boss
    and the Online Distributed Proofreading Team"), or words only credits use."""
    match = _CREDIT.match(text) if len(text) <= _CREDIT_MAX else None
    if match is None:
        return False
    if _CREDIT_WORDS.search(text):
        return True
    names = re.findall(r"[^\W\d_][\w'\u2019.-]*", text[match.end() :])
    return bool(names) and all(w[0].isupper() or w in _NAME_JOINS for w in names)


_CREDIT_WORDS = re.compile(
    r"proofread|gutenberg|e-?text|e-?book|transcri|volunteer|scann|page images|"
    r"internet archive|pgdp|html version|distributed",
    re.IGNORECASE,
)
_NAME_JOINS = frozenset(("and", "the", "of", "de", "van", "von", "at", "&"))


def drop_credits(blocks: list[Block]) -> list[Block]:
    """`blocks` without transcription credit lines among their first few."""
    return [b for k, b in enumerate(blocks) if k >= 5 or not _credit(b.text)]


def chapter_heading(text: str, heading: bool = True) -> bool:
    """Whether a line of text is a chapter heading: a chapter keyword and a number (any
    block), a bare roman numeral (any block), or a numbered title "IV. The Storm" (a heading
    element only)."""
    text = text.strip()
    if not text or len(text) > _HEADING_MAX:
        return False
    if _KEYWORD_LINE.fullmatch(text) or _ROMAN.fullmatch(text):
        return True
    return heading and bool(
        _KEYWORD_HEADING.fullmatch(text)
        or text.rstrip(".").isdigit()
        or _NUMBERED_TITLE.fullmatch(text)
        or _NAMED.fullmatch(text)
    )


def part_heading(text: str) -> bool:
    """Whether a heading or TOC label names a part of the book ("BOOK TWO: 1806")."""
    text = text.strip()
    return len(text) <= _HEADING_MAX and bool(_PART.fullmatch(text))


def leading_part(seg: Segment) -> tuple[str, int]:
    """The name of a part heading opening `seg` ("BOOK TWO", "1806") that is not its own
    label, and how many blocks it takes; ("", 0) when there is none."""
    wanted = tokens(seg.label)
    k = 0
    while (
        k < len(seg.blocks) - 1
        and seg.blocks[k].heading
        and (k > 0 or part_heading(seg.blocks[k].text))
        and not (k > 0 and chapter_heading(seg.blocks[k].text))
        and not (wanted and contains(wanted, tokens(seg.blocks[k].text)))
    ):
        k += 1
    return join_headings([b.text for b in seg.blocks[:k]]), k


def _part_tail(blocks: list[Block]) -> tuple[list[Block], str]:
    """`blocks` without a trailing part heading ("BOOK TWO", "1806"), and its name."""
    k = len(blocks)
    while k > 0 and blocks[k - 1].heading:
        k -= 1
    if k == len(blocks) or not part_heading(blocks[k].text):
        return blocks, ""
    return blocks[:k], join_headings([b.text for b in blocks[k:]])


def split_at_headings(seg: Segment, least: int = 2) -> list[Segment]:
    """`seg` cut before each in-text chapter heading, when it holds at least `least` of
    them; the text before the first (a title page, say) stays a piece with `seg`'s label.

    Each new piece is labelled with its heading (and a heading subtitle right after it), so
    a label repeated across parts is told apart as TOC labels are; its parent is `seg`'s
    label, the part around it, unless that is a chapter name itself."""
    starts = [k for k, b in enumerate(seg.blocks) if chapter_heading(b.text, b.heading)]
    # Heading runs (a contents page, "CHAPTER I." then a numbered subtitle) cut once.
    starts = [k for n, k in enumerate(starts) if n == 0 or starts[n - 1] != k - 1]
    if len(starts) < least:
        return [seg]
    parent = seg.label if seg.label and not chapter_heading(seg.label) else seg.parent
    # A part heading ending a piece ("BOOK TWO" after book one's last chapter) names the part
    # of the chapters after it.
    head, part = _part_tail(seg.blocks[: starts[0]])
    parent = part or parent
    pieces = [replace(seg, blocks=head)] if head else []
    for n, start in enumerate(starts):
        blocks = list(seg.blocks[start : starts[n + 1] if n + 1 < len(starts) else None])
        blocks[0] = replace(blocks[0], heading=True)
        blocks, part = _part_tail(blocks)
        if not blocks:  # a heading-only piece whose headings were all the next part's name
            parent = part or parent
            continue
        lead = [blocks[0].text]
        while len(lead) < len(blocks) - 1 and len(lead) < 3 and blocks[len(lead)].heading:
            lead.append(blocks[len(lead)].text)
        pieces.append(
            Segment(
                blocks,
                label=shorten(join_headings(lead)),
                parent=parent,
                source=seg.source,
                at_file_start=seg.at_file_start and start == 0,
            )
        )
        parent = part or parent
    return pieces


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
