"""Read an EPUB into a `Book` of story chapters. The only module that imports ebooklib.

Reading happens in three steps:
1. `_inspect` opens the ZIP and the package document itself, so broken files get a precise
   reason, and repairs what is recoverable (manifest entries for missing files) in memory;
2. ebooklib loads the (repaired) package: spine, items, TOC; a broken nav or NCX is retried
   without it, because the text never depends on navigation;
3. the linear spine documents are parsed once (`xhtml.extract`) and cut into segments at TOC
   entries (or at file starts), then front/back matter and boilerplate are dropped, and what
   no TOC entry names a chapter of is cut further at its in-text chapter headings.

Memory is bounded by `ReadLimits`: only the members that carry text or structure are ever
decompressed (ebooklib gets empty stand-ins for images, fonts and styles, and for the content
documents, which are streamed from the ZIP straight into the parser), each at most
`ReadLimits.member` bytes, all of them together at most `ReadLimits.total`; both are checked
against the sizes the ZIP declares before reading and against the bytes actually read, since
a ZIP's headers can lie. A book beyond them is refused (`BookError` naming the member).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import posixpath
import re
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

from ebooklib import epub
from lxml import etree

from imaginize.errors import BookError, ConfigError
from imaginize.model import Book, Chapter
from imaginize.reading import xhtml
from imaginize.reading.xhtml import Segment

CONTAINER = "META-INF/container.xml"
ENCRYPTION = "META-INF/encryption.xml"
OPF_MEDIA_TYPE = "application/oebps-package+xml"
NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
    "enc": "http://www.w3.org/2001/04/xmlenc#",
}
DOC_MEDIA_TYPES = frozenset(("application/xhtml+xml", "text/html"))
GUIDE_TYPES = {"title-page": "titlepage", "notes": "endnotes", "copyright": "copyright-page"}

# ---------------------------------------------------------------------------- public API


MiB = 1 << 20
MEMBER_LIMIT_ENV = "IMAGINIZE_EPUB_FILE_LIMIT_MB"
TOTAL_LIMIT_ENV = "IMAGINIZE_EPUB_TEXT_LIMIT_MB"
STRUCTURE_LIMIT_ENV = "IMAGINIZE_EPUB_NAV_LIMIT_MB"


@dataclass(frozen=True)
class ReadLimits:
    """The most bytes decompressed from one member of the EPUB, and from all of them; and
    from one structure file (container, package, nav, NCX), which is parsed whole into a tree
    (~30 times its size: a 60 MiB nav took 1.8 GiB), where content documents are streamed.

    Real books stay far below: in the test corpus the largest content document is 128 KiB,
    the largest structure file 14 KiB, and a whole book's text and structure files are under
    0.5 MiB; a whole long novel in one XHTML file is 3-6 MiB, a nav listing every page of a
    2,000-page book ~0.2 MiB. A zip bomb (1 MiB expanding to 1 GiB) is refused at once.
    """

    member: int = 64 * MiB
    total: int = 256 * MiB
    structure: int = 4 * MiB

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReadLimits:
        """The defaults, or what IMAGINIZE_EPUB_FILE_LIMIT_MB / _TEXT_LIMIT_MB / _NAV_LIMIT_MB
        say (MiB)."""
        env = os.environ if env is None else env
        return cls(
            member=_mib(env, MEMBER_LIMIT_ENV, cls.member),
            total=_mib(env, TOTAL_LIMIT_ENV, cls.total),
            structure=_mib(env, STRUCTURE_LIMIT_ENV, cls.structure),
        )


def _mib(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r}: expected a positive number of MiB")
    return int(value * MiB)


def read_book(path: str | Path, limits: ReadLimits | None = None) -> Book:
    """Read the EPUB at `path`; every failure becomes a `BookError` with a short reason.

    `limits` default to `ReadLimits.from_env()`."""
    path = Path(path)
    limits = ReadLimits.from_env() if limits is None else limits
    try:
        return _read(path, limits)
    except BookError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise BookError(path, f"the book is too large or too deeply nested ({exc!r})") from exc
    except Exception as exc:  # the boundary: ebooklib and lxml raise many raw types
        raise BookError(path, f"cannot read EPUB ({type(exc).__name__}: {exc})") from exc


def chapter_selection(spec: str, count: int) -> list[int]:
    """Parse "1-3,7" into sorted 1-based chapter numbers; "5-" runs to the end, "all" is all."""
    text = spec.strip().lower()
    if text in ("all", "*"):
        return list(range(1, count + 1))
    chosen: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*", part)
        if match is None:
            raise ConfigError(f"bad chapter selection {spec!r}: expected e.g. '1-3,7'")
        low = int(match[1])
        high = int(match[3]) if match[3] else (count if match[2] else low)
        if low > high:
            raise ConfigError(f"bad chapter selection {spec!r}: range {part.strip()!r} is empty")
        if low < 1 or high > count:
            raise ConfigError(
                f"chapter selection {spec!r} is outside the book's chapters 1-{count}"
                if count
                else f"chapter selection {spec!r}: the book has no chapters"
            )
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def book_fingerprint(path: str | Path) -> str:
    """sha256 of the file's bytes, streamed so a large book is not held in memory."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise BookError(path, _os_reason(exc)) from exc


# ---------------------------------------------------------------------------- the package


@dataclass
class _Package:
    """What we learn from the ZIP and OPF before ebooklib sees them."""

    opf_path: str
    opf: etree._Element
    title: str
    author: str
    language: str
    nav_href: str | None
    budget: _Budget
    replacements: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # ZIP members of the navigation (nav, NCX) that ebooklib needs to read for real.
    navigation: set[str] = field(default_factory=set)

    @property
    def opf_dir(self) -> str:
        return posixpath.dirname(self.opf_path)

    def write_opf(self) -> None:
        self.replacements[self.opf_path] = etree.tostring(
            self.opf, xml_declaration=True, encoding="utf-8"
        )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an EPUB file"
    if isinstance(exc, PermissionError):
        return "cannot read file: permission denied"
    return f"cannot read file: {exc.strerror or exc}"


def _open_zip(path: Path) -> zipfile.ZipFile:
    if path.is_dir():
        raise BookError(path, "is a directory, not an EPUB file")
    try:
        if path.stat().st_size == 0:
            raise BookError(path, "file is empty")
        with open(path, "rb") as handle:
            magic = handle.read(4)
        return zipfile.ZipFile(path)
    except OSError as exc:
        raise BookError(path, _os_reason(exc)) from exc
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError) as exc:
        if magic.startswith(b"PK"):
            raise BookError(path, "damaged ZIP archive (truncated or corrupt)") from exc
        kind = next((k for m, k in _MAGIC if magic.startswith(m)), "")
        hint = f"it looks like {kind}" if kind else "is this an EPUB?"
        raise BookError(path, f"not a ZIP archive ({hint})") from exc


_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF"))
# What reading one damaged ZIP member can raise (RuntimeError: "password required").
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


class _Budget:
    """Every byte decompressed from the book goes through here and counts against `limits`.

    A member counts once towards the total however often it is read (a document parsed as
    XML, then again as HTML); its declared size is checked before anything is read.
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile, limits: ReadLimits) -> None:
        self.path = path
        self.zf = zf
        self.limits = limits
        self.counted: dict[str, int] = {}  # the most bytes read from each member so far
        self.total = 0  # their sum
        # Members parsed whole into a tree, under `limits.structure`.
        self.structure = {CONTAINER, ENCRYPTION}

    def _refuse(self, name: str, what: str) -> BookError:
        return BookError(self.path, f"{name} {what}; refused (a zip bomb?)")

    def _limit(self, name: str) -> tuple[int, str]:
        """The most bytes `name` may hold, and how to say that limit."""
        if name in self.structure:
            limit, what, env = (
                self.limits.structure,
                "a package or navigation file",
                STRUCTURE_LIMIT_ENV,
            )
        else:
            limit, what, env = self.limits.member, "one file", MEMBER_LIMIT_ENV
        return limit, f"the {_size(limit)} limit for {what} ({env})"

    def check_declared(self, names: Iterable[str]) -> None:
        """Refuse before reading when the ZIP itself says the members are too large."""
        total = 0
        for name in names:
            size = self.zf.getinfo(name).file_size
            total += size
            limit, said = self._limit(name)
            if size > limit:
                raise self._refuse(name, f"declares {_size(size)} beyond {said}")
            if total > self.limits.total:
                raise self._refuse(name, f"takes the text past {_over_total(self.limits)}")

    def stream(self, name: str) -> Iterator[bytes]:
        """The member's bytes in pieces of at most 1 MiB; `BookError` past a limit."""
        size = self.zf.getinfo(name).file_size
        limit, said = self._limit(name)
        if size > limit:
            raise self._refuse(name, f"declares {_size(size)} beyond {said}")
        read = 0
        with self.zf.open(name) as member:
            while chunk := member.read(MiB):
                read += len(chunk)
                if read > limit:
                    raise self._refuse(name, f"expands beyond {said}")
                if read > self.counted.get(name, 0):
                    self.total += read - self.counted.get(name, 0)
                    self.counted[name] = read
                    if self.total > self.limits.total:
                        raise self._refuse(name, f"takes the text past {_over_total(self.limits)}")
                yield chunk

    def read(self, name: str) -> bytes:
        return b"".join(self.stream(name))


def _size(n: int) -> str:
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"


def _over_total(limits: ReadLimits) -> str:
    return f"the {_size(limits.total)} limit for a whole book ({TOTAL_LIMIT_ENV})"


def _read_member(budget: _Budget, name: str) -> bytes:
    try:
        return budget.read(name)
    except _ZIP_ERRORS as exc:
        raise BookError(budget.path, f"damaged ZIP archive: cannot read {name}") from exc


def _readable(budget: _Budget, name: str) -> bool:
    """Decompress a member fully (CRC is checked at the end) without keeping it."""
    try:
        for _ in budget.stream(name):
            pass
        return True
    except _ZIP_ERRORS:
        return False


def _xml(data: bytes) -> etree._Element | None:
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None


def _inspect(path: Path, zf: zipfile.ZipFile, limits: ReadLimits) -> _Package:
    names = set(zf.namelist())
    budget = _Budget(path, zf, limits)
    if CONTAINER not in names:
        raise BookError(path, f"missing {CONTAINER}")
    container = _xml(_read_member(budget, CONTAINER))
    if container is None:
        raise BookError(path, f"{CONTAINER} is not valid XML")
    rootfiles = [r for r in container.iterfind(".//c:rootfile", NS) if r.get("full-path")]
    typed = [r for r in rootfiles if r.get("media-type") == OPF_MEDIA_TYPE]
    if not rootfiles:
        raise BookError(path, f"{CONTAINER} names no package document")
    opf_path = posixpath.normpath(unquote((typed or rootfiles)[0].get("full-path", "")))
    if opf_path not in names:
        raise BookError(path, f"missing package document {opf_path}")
    budget.structure.add(opf_path)
    opf = _xml(_read_member(budget, opf_path))
    if opf is None or etree.QName(opf).localname != "package":
        raise BookError(path, f"package document {opf_path} is not valid XML")
    manifest = opf.find("opf:manifest", NS)
    spine = opf.find("opf:spine", NS)
    if manifest is None:
        raise BookError(path, "no manifest in the package document")
    if spine is None:
        raise BookError(path, "no spine in the package document")
    if spine.find("opf:itemref", NS) is None:
        raise BookError(path, "the spine lists no documents")

    title, author, language = _metadata(opf)
    pkg = _Package(opf_path, opf, title or path.stem, author, language, None, budget)
    if not typed:
        # ebooklib only follows a rootfile with the right media-type: give it one.
        pkg.replacements[CONTAINER] = _CONTAINER_XML.format(opf_path).encode()
    needed = _text_members(pkg, manifest, spine)
    budget.structure |= pkg.navigation
    budget.check_declared(sorted(n for n in needed if n in names))
    _drop_missing_items(path, pkg, manifest, spine, names, needed)
    _check_encryption(path, pkg, names)
    for item in manifest.iterfind("opf:item", NS):
        if "nav" in item.get("properties", "").split():
            pkg.nav_href = posixpath.normpath(unquote(item.get("href", "")))
    return pkg


NCX_MEDIA_TYPE = "application/x-dtbncx+xml"


def _member(pkg: _Package, href: str | None) -> str:
    return posixpath.normpath(posixpath.join(pkg.opf_dir, unquote(href or "")))


def _text_members(pkg: _Package, manifest: etree._Element, spine: etree._Element) -> set[str]:
    """The members read for real: spine documents, the nav and the NCX. Everything else
    (images, fonts, styles, documents outside the spine) is never decompressed."""
    in_spine = {ref.get("idref") for ref in spine.iterfind("opf:itemref", NS)}
    needed: set[str] = set()
    for item in manifest.iterfind("opf:item", NS):
        media_type = item.get("media-type")
        nav = "nav" in item.get("properties", "").split()
        if nav or media_type == NCX_MEDIA_TYPE:
            pkg.navigation.add(_member(pkg, item.get("href")))
        if nav or media_type == NCX_MEDIA_TYPE or item.get("id") in in_spine:
            needed.add(_member(pkg, item.get("href")))
    return needed


_CONTAINER_XML = (
    '<?xml version="1.0"?><container version="1.0" xmlns="{ns}"><rootfiles>'
    '<rootfile full-path="{{}}" media-type="{mt}"/></rootfiles></container>'
).format(ns=NS["c"], mt=OPF_MEDIA_TYPE)


def _drop_missing_items(
    path: Path,
    pkg: _Package,
    manifest: etree._Element,
    spine: etree._Element,
    names: set[str],
    needed: set[str],
) -> None:
    """ebooklib dies on a manifest file missing from the ZIP, and a spine document that
    cannot be decompressed has no text: unlist them. Files never read are only looked up."""
    spine_ids = {ref.get("idref") for ref in spine.iterfind("opf:itemref", NS)}
    gone: list[str] = []
    changed = False
    for item in list(manifest.iterfind("opf:item", NS)):
        href = item.get("href")
        full = _member(pkg, href)
        if href and full in names and (full not in needed or _readable(pkg.budget, full)):
            continue
        manifest.remove(item)
        changed = True
        ident = item.get("id")
        if ident in spine_ids:
            pkg.warnings.append(f"document {href} is missing or damaged; skipped")
            for ref in spine.iterfind("opf:itemref", NS):
                if ref.get("idref") == ident:
                    spine.remove(ref)
        else:
            gone.append(href or f"(item {ident} without href)")
    if gone:
        more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
        pkg.warnings.append(f"missing or damaged resource {', '.join(gone[:3])}{more}; ignored")
    ids = {item.get("id") for item in manifest.iterfind("opf:item", NS)}
    if spine.get("toc") and spine.get("toc") not in ids:
        # ebooklib dereferences the NCX id without checking it.
        del spine.attrib["toc"]
        changed = True
    if spine.find("opf:itemref", NS) is None:
        raise BookError(path, "none of the spine documents can be read from the archive")
    if changed:
        pkg.write_opf()


def _check_encryption(path: Path, pkg: _Package, names: set[str]) -> None:
    """Font obfuscation is harmless; encrypted content documents (DRM) are unreadable."""
    name = ENCRYPTION
    if name not in names:
        return
    root = _xml(_read_member(pkg.budget, name))
    if root is None:
        return
    encrypted = {
        posixpath.normpath(unquote(ref.get("URI", "")))
        for ref in root.iterfind(".//enc:CipherReference", NS)
    }
    hrefs = {
        posixpath.normpath(posixpath.join(pkg.opf_dir, unquote(item.get("href", ""))))
        for item in pkg.opf.iterfind("opf:manifest/opf:item", NS)
        if item.get("media-type") in DOC_MEDIA_TYPES
    }
    if encrypted & hrefs:
        raise BookError(path, "the book is encrypted (DRM-protected); its text cannot be read")


def _metadata(opf: etree._Element) -> tuple[str, str, str]:
    meta = opf.find("opf:metadata", NS)
    if meta is None:
        return "", "Unknown author", "und"

    def texts(tag: str) -> list[tuple[etree._Element, str]]:
        found = (
            (el, " ".join((el.text or "").split())) for el in meta.iterfind(f".//dc:{tag}", NS)
        )
        return [(el, text) for el, text in found if text]

    titles = texts("title")
    creators = texts("creator")
    # EPUB 2 says opf:role="aut"; EPUB 3 says <meta refines="#id" property="role">aut</meta>.
    roles = {
        m.get("refines", "").lstrip("#"): (m.text or "").strip()
        for m in meta.iterfind("opf:meta[@property='role']", NS)
    }

    def role(el: etree._Element) -> str:
        return el.get(f"{{{NS['opf']}}}role") or roles.get(el.get("id", ""), "")

    authors = [text for el, text in creators if role(el) in ("", "aut")] or [t for _, t in creators]
    languages = texts("language")
    return (
        titles[0][1] if titles else "",
        " & ".join(dict.fromkeys(authors)) or "Unknown author",
        languages[0][1] if languages else "und",
    )


_FALLBACKS = {
    "nav": "the navigation document is broken; using the NCX or the spine",
    "ncx": "the NCX table of contents is broken; using the spine",
}


def _load(path: Path, pkg: _Package) -> epub.EpubBook:
    """ebooklib; when it fails, drop the nav, then the NCX, and retry: the text needs neither."""
    navs = pkg.opf.xpath("opf:manifest/opf:item[contains(@properties, 'nav')]", namespaces=NS)
    spine = pkg.opf.find("opf:spine", NS)
    attempts = [""]
    if navs:
        attempts.append("nav")
    if spine is not None and spine.get("toc"):
        attempts.append("ncx")
    applied: list[str] = []
    error: Exception | None = None
    for attempt in attempts:
        if attempt == "nav":
            for item in navs:
                props = item.get("properties", "").split()
                item.set("properties", " ".join(p for p in props if p != "nav"))
        elif attempt == "ncx" and spine is not None:
            del spine.attrib["toc"]
        if attempt:
            applied.append(attempt)
            pkg.write_opf()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader = _Reader(path, pkg)
                book = reader.load()
                reader.process()
        except BookError:
            raise
        except Exception as exc:  # ebooklib leaks KeyError/TypeError/IndexError/...
            error = exc
            continue
        pkg.warnings.extend(_FALLBACKS[a] for a in applied)
        return book
    raise BookError(path, f"cannot read EPUB ({type(error).__name__}: {error})")


class _Reader(epub.EpubReader):
    """ebooklib reading through the budget: repaired members from memory, the container,
    package and navigation for real, an empty stand-in for every other member (images,
    styles, content documents), so ebooklib never holds a book's bulk in memory."""

    def __init__(self, path: Path, pkg: _Package) -> None:
        super().__init__(str(path), {"ignore_ncx": True})
        self.pkg = pkg
        self.names = set(pkg.budget.zf.namelist())

    def read_file(self, name: str) -> bytes:
        name = posixpath.normpath(name)
        if name in self.pkg.replacements:
            return self.pkg.replacements[name]
        if name not in self.names:
            raise KeyError(name)  # what ebooklib expects of a missing member
        if name in (CONTAINER, self.pkg.opf_path) or name in self.pkg.navigation:
            return self.pkg.budget.read(name)
        return b""


# ---------------------------------------------------------------------------- chapters


@dataclass
class _Doc:
    href: str
    text: xhtml.DocText


@dataclass
class _Entry:
    """A TOC entry flattened out of its nesting; `parent` is the enclosing section's label."""

    label: str
    href: str
    fragment: str
    leaf: bool
    parent: str


def _read(path: Path, limits: ReadLimits) -> Book:
    with _open_zip(path) as zf:
        pkg = _inspect(path, zf, limits)
        ebook = _load(path, pkg)
        entries = _toc_entries(ebook)
        marks = _marks(ebook)
        anchors: dict[str, set[str]] = {}
        for href, fragment in [(e.href, e.fragment) for e in entries] + list(marks):
            if fragment:
                anchors.setdefault(href, set()).add(fragment)
        docs = _documents(ebook, pkg, anchors)
    if not docs or not any(doc.text.blocks for doc in docs):
        raise BookError(path, "no readable text")

    spine_notes: list[str] = []
    by_spine = _chapters(_segments(docs, [], marks), pkg.title, spine_notes)
    toc_cuts = _resolve(entries, docs, pkg.warnings)
    chapters, notes = by_spine, spine_notes
    if toc_cuts:
        toc_notes: list[str] = []
        by_toc = _chapters(_segments(docs, toc_cuts, marks), pkg.title, toc_notes)
        # The TOC wins unless it is much coarser than the files (a TOC of parts only, a
        # lone "Start" link): then the files are the better chapters.
        if len(by_toc) * 2 >= len(by_spine) and not (len(by_toc) <= 1 < len(by_spine)):
            chapters, notes = by_toc, toc_notes
        else:
            pkg.warnings.append("the table of contents is coarser than the files; using the files")
    pkg.warnings.extend(notes)
    if not chapters:
        raise BookError(path, "no readable text (only front and back matter found)")
    return Book(
        path=path,
        title=pkg.title,
        author=pkg.author,
        language=pkg.language,
        chapters=tuple(chapters),
        warnings=tuple(pkg.warnings),
    )


def _split_href(href: str, base: str) -> tuple[str, str]:
    target, _, fragment = unquote(href).partition("#")
    return posixpath.normpath(posixpath.join(base, target)) if target else "", fragment


def _toc_entries(ebook: epub.EpubBook) -> list[_Entry]:
    items = list(ebook.get_items())
    ncx = next((i for i in items if isinstance(i, epub.EpubNcx)), None)
    # ebooklib resolves nav hrefs against the OPF folder but leaves NCX ones as written.
    from_nav = any(isinstance(i, epub.EpubNav) for i in items)
    base = "" if from_nav or ncx is None else posixpath.dirname(ncx.file_name)
    entries: list[_Entry] = []

    def add(node: object, leaf: bool, parent: str) -> str:
        label = " ".join(str(getattr(node, "title", "") or "").split())
        href = getattr(node, "href", "") or ""
        if href:
            entries.append(_Entry(label, *_split_href(href, base), leaf=leaf, parent=parent))
        return label

    def walk(nodes: Iterable[object], parent: str) -> None:
        for node in nodes:
            if isinstance(node, tuple) and len(node) == 2:
                label = add(node[0], False, parent)
                walk(node[1], label or parent)
            elif isinstance(node, list | tuple):
                walk(node, parent)
            else:
                add(node, True, parent)

    toc = ebook.toc or []
    # An empty NCX navMap comes back from ebooklib as one bare Link, not a list.
    walk(toc if isinstance(toc, list | tuple) else [toc], "")
    return [e for e in entries if e.href]


def _marks(ebook: epub.EpubBook) -> dict[tuple[str, str], frozenset[str]]:
    """Guide (EPUB 2) and landmarks (EPUB 3) entries that name non-story matter."""
    found: dict[tuple[str, str], set[str]] = {}

    def note(href: str, base: str, kind: str) -> None:
        kind = GUIDE_TYPES.get(kind.lower(), kind.lower())
        if kind in xhtml.NON_STORY or kind in xhtml.FRONT_ONLY:
            found.setdefault(_split_href(href, base), set()).add(kind)

    for ref in ebook.guide or []:
        note(ref.get("href") or "", "", ref.get("type") or "")
    for nav in (i for i in ebook.get_items() if isinstance(i, epub.EpubNav)):
        try:
            root = xhtml.parse(nav.content)
        except (xhtml.XhtmlError, ValueError):
            continue
        base = posixpath.dirname(nav.file_name)
        for el in root.iter():
            if not isinstance(el.tag, str) or xhtml.local_name(el.tag) != "nav":
                continue
            if "landmarks" not in xhtml.semantic_types(el):
                continue
            for link in el.iter():
                if isinstance(link.tag, str) and link.get("href"):
                    for kind in xhtml.semantic_types(link):
                        note(link.get("href", ""), base, kind)
    return {key: frozenset(kinds) for key, kinds in found.items() if key[0]}


def _documents(ebook: epub.EpubBook, pkg: _Package, anchors: dict[str, set[str]]) -> list[_Doc]:
    """The linear spine documents, parsed once; the nav document is navigation, not text."""
    items = {item.id: item for item in ebook.get_items() if item.id}
    names = set(pkg.budget.zf.namelist())
    docs: list[_Doc] = []
    seen: set[str] = set()
    for idref, linear in ebook.spine:
        if str(linear).strip().lower() == "no":
            continue
        item = items.get(idref)
        if item is None:
            pkg.warnings.append(f"spine entry {idref!r} is not in the manifest; skipped")
            continue
        href = posixpath.normpath(item.file_name)
        if isinstance(item, epub.EpubNav) or href == pkg.nav_href or href in seen:
            continue
        if item.media_type not in DOC_MEDIA_TYPES:
            continue
        # ebooklib holds an empty stand-in: the document is streamed from the ZIP instead.
        name = posixpath.normpath(posixpath.join(pkg.opf_dir, item.file_name))
        if name not in names or pkg.budget.zf.getinfo(name).file_size == 0:
            continue
        seen.add(href)
        try:
            text = xhtml.extract(lambda name=name: pkg.budget.stream(name), anchors.get(href, ()))
        except (xhtml.XhtmlError, ValueError) as exc:
            pkg.warnings.append(f"cannot parse {href} ({exc}); skipped")
            continue
        except _ZIP_ERRORS:
            pkg.warnings.append(f"document {href} is damaged; skipped")
            continue
        docs.append(_Doc(href, text))
    return docs


_Cut = tuple[int, int, _Entry | None]  # (document index, block index, TOC entry)


def _resolve(entries: list[_Entry], docs: list[_Doc], notes: list[str]) -> list[_Cut]:
    """TOC entries as positions in reading order; ones pointing nowhere are left out."""
    index = {doc.href: i for i, doc in enumerate(docs)}
    placed: list[tuple[int, int, int, _Entry]] = []
    missing = 0
    for n, entry in enumerate(entries):
        d = index.get(entry.href)
        if d is None:  # non-linear, missing or not a document
            continue
        b = docs[d].text.anchors.get(entry.fragment) if entry.fragment else 0
        if b is None:
            missing += 1
            continue
        placed.append((d, b, n, entry))
    cuts: dict[tuple[int, int], _Entry] = {}
    section = ""
    for d, b, _, entry in sorted(placed, key=lambda p: p[:3]):
        if not entry.leaf or xhtml.part_heading(entry.label):
            section = entry.label
        elif section:
            # An entry belongs to the section read last, whatever the nesting says: a broken
            # NCX can put every chapter of a long novel under its first part, a flat one
            # lists "Book Two" as the sibling of its chapters.
            entry = replace(entry, parent=section)
        # Several entries at one spot (a section and its first chapter): the leaf names it.
        if (d, b) not in cuts or (entry.leaf and not cuts[(d, b)].leaf):
            cuts[(d, b)] = entry
    if missing:
        notes.append(f"{missing} table-of-contents entries point at anchors that do not exist")
    return [(d, b, entry) for (d, b), entry in sorted(cuts.items())]


def _segments(
    docs: list[_Doc], cuts: list[_Cut], marks: dict[tuple[str, str], frozenset[str]]
) -> list[Segment]:
    """Cut the book at the TOC positions, and at every file start before the first of them.

    Text from a cut to the next one is one chapter, but each further file it runs over is
    its own piece (`continues`), so that a file the TOC skips is judged on its own.
    """
    first = (cuts[0][0], cuts[0][1]) if cuts else (len(docs), 0)
    starts: dict[tuple[int, int], _Entry | None] = {
        (d, 0): None for d in range(len(docs)) if (d, 0) <= first
    }
    starts.update({(d, b): entry for d, b, entry in cuts})
    ordered = sorted(starts.items(), key=lambda item: item[0])
    pieces: list[Segment] = []
    for k, ((d, b), entry) in enumerate(ordered):
        end = ordered[k + 1][0] if k + 1 < len(ordered) else (len(docs), 0)
        doc, at = d, b
        while (doc, at) < end:
            blocks = docs[doc].text.blocks
            href = docs[doc].href
            fragment = entry.fragment if entry and doc == d else ""
            kinds = marks.get((href, fragment), frozenset())
            if at == 0:
                kinds |= marks.get((href, ""), frozenset())
            pieces.append(
                Segment(
                    blocks[at : end[1] if doc == end[0] else len(blocks)],
                    label=entry.label if entry and doc == d else "",
                    parent=entry.parent if entry and doc == d else "",
                    source=f"{href}#{fragment}" if fragment else href,
                    at_file_start=at == 0,
                    marks=kinds,
                    continues=doc != d,
                )
            )
            doc, at = doc + 1, 0
    return pieces


# A chapter with more text than this is cut into parts at paragraph ends while it is read:
# no real chapter comes near (a 60,000-word chapter is ~350,000 characters), and each part
# stays a unit of work a worker can hold and finish.
CHAPTER_CHARS = 1_000_000


def _parts(seg: Segment, notes: list[str]) -> list[Segment]:
    """`seg`, or its blocks in runs of at most CHAPTER_CHARS characters (a block is at most
    xhtml.MAX_BLOCK), each a part titled after the chapter."""
    chars = sum(len(b.text) for b in seg.blocks)
    if chars <= CHAPTER_CHARS:
        return [seg]
    runs: list[list[xhtml.Block]] = [[]]
    size = 0
    for block in seg.blocks:
        # Paragraphs are joined with a blank line: two characters each but the first.
        cost = len(block.text) + (2 if runs[-1] else 0)
        if runs[-1] and size + cost > CHAPTER_CHARS:
            runs.append([])
            size, cost = 0, len(block.text)
        runs[-1].append(block)
        size += cost
    notes.append(
        f"{seg.source} holds {chars:,} characters of text in one chapter; read as "
        f"{len(runs)} parts of at most {CHAPTER_CHARS:,}"
    )
    return [replace(seg, blocks=run) for run in runs]


def _drop_reason(seg: Segment, book_title: str, front: bool) -> str | None:
    """Why `seg` is not story; `front`: no chapter came before it."""
    why = xhtml.drop_reason(seg, book_title)
    return xhtml.front_reason(seg) if why is None and front else why


def _skipped(seg: Segment, why: str, notes: list[str]) -> None:
    chars = sum(len(b.text) for b in seg.blocks)
    if chars >= xhtml.SMALL:
        # Front matter is short: this much text left out may be story misjudged.
        notes.append(f"{seg.source} ({chars:,} characters) skipped as not story: {why}")


def _split(kept: list[Segment], book_title: str, notes: list[str]) -> list[Segment]:
    """Chapters cut further at their in-text chapter headings, for books without a usable
    TOC: a segment without a TOC label holding two or more headings (or one after front
    matter), or a large one whose label is not a chapter's ("Part One", the book's title)."""
    out: list[Segment] = []
    for seg in kept:
        if seg.label and (
            xhtml.chapter_heading(seg.label) or sum(len(b.text) for b in seg.blocks) < xhtml.SMALL
        ):
            out.append(seg)
            continue
        parts = xhtml.split_at_headings(seg, least=1 if not seg.label else 2)
        # One heading: a cut only where what comes before it is no story.
        if (
            len(parts) == 2
            and parts[0].label == seg.label
            and _drop_reason(parts[0], book_title, not out) is None
        ):
            parts = [seg]
        if len(parts) == 1:
            out.append(seg)
            continue
        for part in parts:
            why = _drop_reason(part, book_title, not out)
            if why is None:
                out.append(part)
            else:
                _skipped(part, why, notes)
    return out


def _chapters(pieces: list[Segment], book_title: str, notes: list[str]) -> list[Chapter]:
    xhtml.strip_gutenberg(pieces)
    kept: list[Segment] = []
    joined = False  # whether the previous piece was kept, so a continuation joins it
    # Before the first chapter, or after a part's title ("Segunda parte"): where a part's own
    # front matter (its tasa, aprobaciones, dedication) sits.
    front = True
    # The part the text itself names last (a part-title page, a part heading opening a
    # chapter), for chapters the TOC does not place in a part, or in the wrong one; it holds
    # until the TOC's own section changes.
    section, toc_section = "", ""
    for seg in pieces:
        seg.blocks = xhtml.story_blocks(seg.blocks)
        if not kept:
            # Before the first chapter: a transcription's credit line is not the book's text.
            seg.blocks = xhtml.drop_credits(seg.blocks)
        if not seg.continues and seg.parent != toc_section:
            section, toc_section = "", seg.parent
        why = _drop_reason(seg, book_title, front)
        lead = [b.text for b in itertools.takewhile(lambda b: b.heading, seg.blocks[:3])]
        name = seg.label or xhtml.join_headings(lead)
        if seg.continues and joined and why in (None, xhtml.NO_TEXT):
            kept[-1].blocks.extend(seg.blocks)
        elif why is None:
            part, count = xhtml.leading_part(seg)
            if count:
                seg.blocks = seg.blocks[count:]
            section = part or (name if xhtml.part_heading(name) else section)
            seg.parent = section or seg.parent
            kept.append(seg)
            joined = True
            front = xhtml.part_heading(name)
        else:
            joined = False
            if xhtml.part_heading(name):
                front, section = True, name
            _skipped(seg, why, notes)
    kept = _split(kept, book_title, notes)
    split = [_parts(seg, notes) for seg in kept]
    heads = [xhtml.title_and_text(parts[0]) for parts in split]
    # A title repeated across sections ("Chapter I" in every part) gets the section's name.
    repeated = Counter(title for title, _ in heads)
    chapters: list[Chapter] = []
    for seg, parts, (title, text) in zip(kept, split, heads, strict=True):
        number = len(chapters) + 1
        if repeated[title] > 1 and title and seg.parent:
            title = xhtml.shorten(f"{seg.parent} \u2014 {title}")
        title = title or f"Chapter {number}"
        if len(parts) == 1:
            chapters.append(Chapter(number, title, text, seg.source))
            continue
        for k, part in enumerate(parts, start=1):
            if k > 1:
                text = "\n\n".join(b.text for b in part.blocks)
            name = f"{title} (part {k} of {len(parts)})"
            chapters.append(Chapter(number + k - 1, name, text, seg.source))
    return chapters
