"""The deterministic merge: chapter result files in, Contents.md, Chapters.md, Elements.md out.

The guides are a pure function of the book's chapter list and the result files: the same
results give byte-identical guides whatever order, process or run produced them. That is what
lets a resumed run, or several workers, end with the same guides as one uninterrupted run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imaginize.analysis.pricing import cost, format_cost, total_cost
from imaginize.coordination.atomic import write_atomic
from imaginize.model import ChapterResult, Element, ElementKind, ImageRecord, Scene, Usage
from imaginize.safetext import one_line

CONTENTS = "Contents.md"
CHAPTERS = "Chapters.md"
ELEMENTS = "Elements.md"

MAX_ELEMENT_QUOTES = 3
_ARTICLE = re.compile(r"^(the|a|an)\s+")
_NON_WORD = re.compile(r"[^\w\s'-]+")
_KIND_ORDER = list(ElementKind)


@dataclass(frozen=True)
class ChapterInfo:
    number: int
    title: str
    words: int = 0


@dataclass(frozen=True)
class BookInfo:
    title: str
    author: str
    chapters: tuple[ChapterInfo, ...]


@dataclass
class MergedElement:
    name: str
    kind: ElementKind
    description: str
    aliases: list[str] = field(default_factory=list)
    chapters: list[int] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """The key under which two spellings of one entity meet: "The White Rabbit" = "white rabbit"."""
    key = _NON_WORD.sub(" ", name.casefold().replace("\u2019", "'"))
    key = " ".join(key.split())
    return _ARTICLE.sub("", key)


def merge_elements(results: Iterable[ChapterResult]) -> list[MergedElement]:
    """One entity per normalised name across the book; an alias that is another element's
    name joins the two, unless several names claim it or the kinds cannot be one entity."""
    ordered = sorted(results, key=lambda r: r.chapter)
    sightings: list[tuple[int, Element]] = [(r.chapter, e) for r in ordered for e in r.elements]
    names = {normalise_name(e.name) for _, e in sightings} - {""}
    parent = {key: key for key in names}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(a: str, b: str) -> None:
        first, second = sorted((find(a), find(b)))
        parent[second] = first

    kinds: dict[str, set[ElementKind]] = {}
    for _, element in sightings:
        kinds.setdefault(normalise_name(element.name), set()).add(element.kind)
    # claims[alias] = the names that give `alias`, itself another element's name, as an alias.
    claims: dict[str, set[str]] = {}
    for _, element in sightings:
        own = normalise_name(element.name)
        for alias in element.aliases:
            key = normalise_name(alias)
            if own and key in parent and key != own and _related(kinds[own], kinds[key]):
                claims.setdefault(key, set()).add(own)
    # An alias claimed by one name joins the two. One claimed by several ("Alice" by both
    # "Alice Liddell" and "Alice Smith") would chain different entities into one, so it joins
    # only names already found to be one entity. Repeated to a fixpoint: order-independent.
    changed = True
    while changed:
        changed = False
        for key, owners in claims.items():
            roots = {find(owner) for owner in owners}
            if len(roots) == 1 and find(key) not in roots:
                union(key, roots.pop())
                changed = True

    groups: dict[str, list[tuple[int, Element]]] = {}
    for chapter, element in sightings:
        key = normalise_name(element.name)
        if key:
            groups.setdefault(find(key), []).append((chapter, element))
    merged = [_merge_group(group) for group in groups.values()]
    return sorted(merged, key=lambda m: (_KIND_ORDER.index(m.kind), normalise_name(m.name)))


def _related(first: set[ElementKind], second: set[ElementKind]) -> bool:
    """Whether an alias may join elements of these kinds: characters and creatures are often
    confused by models, but a character is never the place or item that shares a word with it
    ("Captain Hook" called "Hook" is not the hook)."""
    beings = {ElementKind.CHARACTER, ElementKind.CREATURE}

    def family(kind: ElementKind) -> str:
        return "being" if kind in beings else kind.value

    return bool({family(k) for k in first} & {family(k) for k in second})


def _merge_group(group: list[tuple[int, Element]]) -> MergedElement:
    name_chapters: dict[str, set[int]] = {}
    for chapter, element in group:
        name_chapters.setdefault(element.name.strip(), set()).add(chapter)
    # The name used in most chapters; ties go to the fuller, then alphabetically first name.
    name = min(name_chapters, key=lambda n: (-len(name_chapters[n]), -len(n), n))
    kinds = Counter(element.kind for _, element in group)
    kind = min(kinds, key=lambda k: (-kinds[k], _KIND_ORDER.index(k)))
    description = ""
    for _, element in group:
        if len(element.description.strip()) > len(description):
            description = element.description.strip()
    seen = {normalise_name(name)}
    aliases: list[str] = []
    for candidate in sorted({n for _, e in group for n in (e.name, *e.aliases)}):
        key = normalise_name(candidate)
        if key and key not in seen:
            seen.add(key)
            aliases.append(candidate.strip())
    quotes: list[str] = []
    for _, element in group:
        for quote in element.quotes:
            if quote not in quotes and len(quotes) < MAX_ELEMENT_QUOTES:
                quotes.append(quote)
    chapters = sorted({chapter for chapter, _ in group})
    return MergedElement(name, kind, description, aliases, chapters, quotes)


def render_chapters(
    book: BookInfo,
    results: Mapping[int, ChapterResult],
    failures: Mapping[int, str] | None = None,
) -> str:
    lines = [f"# {book.title}: illustration guide by chapter", ""]
    for info in book.chapters:
        lines += [f"## Chapter {info.number}: {info.title}", ""]
        result = results.get(info.number)
        if result is None:
            failed = (failures or {}).get(info.number)
            said = f"*Failed: {one_line(failed)}*" if failed else "*Not analysed yet.*"
            lines += [said, ""]
            continue
        images = {image.scene: image for image in result.images}
        for index, scene in enumerate(result.scenes, start=1):
            lines += _render_scene(index, scene, images.get(index))
    return "\n".join(lines).rstrip() + "\n"


def _render_scene(index: int, scene: Scene, image: ImageRecord | None = None) -> list[str]:
    lines = [f"### Scene {index}", ""]
    if image is not None:
        lines += [f"![Scene {index}]({image.file})", ""]
    lines += [*_blockquote(scene.quote), ""]
    lines += [f"**Visual description:** {scene.description}", ""]
    details = [
        ("Composition", scene.composition),
        ("Characters", ", ".join(scene.characters)),
        ("Setting", scene.setting),
        ("Lighting", scene.lighting),
        ("Mood", scene.mood),
    ]
    lines += [f"- **{label}:** {value}" for label, value in details if value]
    if any(value for _, value in details):
        lines.append("")
    if scene.image_prompt:
        lines += [f"**Image prompt:** {scene.image_prompt}", ""]
    if image is not None:
        lines += [f"*Image: {image.model}, {image.size}.*", ""]
    return lines


def _blockquote(text: str) -> list[str]:
    """Every line quoted: a passage spanning paragraphs stays one blockquote."""
    return [f"> {line}" if line.strip() else ">" for line in text.splitlines()] or [">"]


def render_elements(book: BookInfo, merged: list[MergedElement]) -> str:
    lines = [f"# {book.title}: characters, creatures, places and items", ""]
    titles = {c.number: c.title for c in book.chapters}
    for kind in ElementKind:
        members = [m for m in merged if m.kind is kind]
        if not members:
            continue
        heading = {"creature": "Creatures", "character": "Characters"}.get(kind.value)
        lines += [f"## {heading or kind.value.title() + 's'}", ""]
        for element in members:
            lines += [f"### {element.name}", ""]
            if element.description:
                lines += [element.description, ""]
            if element.aliases:
                lines.append(f"- **Also called:** {', '.join(element.aliases)}")
            where = ", ".join(f"{n} ({titles.get(n, '?')})" for n in element.chapters)
            lines += [f"- **Appears in chapters:** {where}", ""]
            for quote in element.quotes:
                lines += [*_blockquote(quote), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_contents(
    book: BookInfo,
    results: Mapping[int, ChapterResult],
    merged: list[MergedElement],
    failures: Mapping[int, str] | None = None,
    spent: Usage | None = None,
    spent_model: str = "",
) -> str:
    """`spent`: tokens of attempts that produced no result (paid for all the same), used with
    `spent_model`."""
    failures = failures or {}
    spent = spent or Usage()
    usage = sum((r.usage for r in results.values()), spent)
    providers = sorted({f"{r.provider} ({r.model})" for r in results.values()})
    lines = [f"# {book.title}", "", f"*by {book.author}*", ""]
    lines += ["## Chapters", "", "| # | Title | Words | Scenes |", "|---:|---|---:|---:|"]
    for info in book.chapters:
        result = results.get(info.number)
        if result is not None:
            scenes = str(len(result.scenes))
        else:
            scenes = "failed" if info.number in failures else "pending"
        title = info.title.replace("|", "\\|")
        lines.append(f"| {info.number} | {title} | {info.words:,} | {scenes} |")
    counts = Counter(m.kind for m in merged)
    lines += ["", "## Elements", ""]
    lines += [f"- {kind.value.title()}s: {counts.get(kind, 0)}" for kind in ElementKind]
    lines += ["", "## Analysis", ""]
    lines.append(f"- Chapters analysed: {len(results)} of {len(book.chapters)}")
    lines.append(f"- Scenes: {sum(len(r.scenes) for r in results.values())}")
    drawn = sum(len(r.images) for r in results.values())
    if drawn:
        lines.append(f"- Images: {drawn}")
    lines.append(f"- Provider: {', '.join(providers) or 'none yet'}")
    wasted = f", {spent.total_tokens:,} of them on attempts that produced no result"
    lines.append(
        f"- Tokens used: {usage.total_tokens:,} "
        f"({usage.prompt_tokens:,} prompt, {usage.completion_tokens:,} completion"
        f"{wasted if spent.total_tokens else ''})"
    )
    dollars = total_cost(results.values())
    if dollars is not None and spent.total_tokens:
        extra = cost(spent_model, spent)
        dollars = None if extra is None else dollars + extra
    if dollars is not None and usage.total_tokens:
        lines.append(f"- Estimated cost: {format_cost(dollars)}")
    dropped = sum(r.dropped_quotes for r in results.values())
    if dropped:
        lines.append(f"- Quotes dropped as not found in the text: {dropped}")
    corrected = sum(r.corrected_quotes for r in results.values())
    if corrected:
        lines.append(f"- Quotes corrected to the book's own words: {corrected}")
    unusable = sum(r.dropped_items for r in results.values())
    if unusable:
        lines.append(f"- Scenes and elements dropped as unusable (no quote or name): {unusable}")
    for number in sorted(failures):
        # A server's reason: one list line, no controls, no key it may have quoted.
        lines.append(f"- Chapter {number} failed: {one_line(failures[number])}")
    return "\n".join(lines) + "\n"


def write_guides(
    out_dir: Path,
    book: BookInfo,
    results: Mapping[int, ChapterResult],
    failures: Mapping[int, str] | None = None,
    spent: Usage | None = None,
    spent_model: str = "",
) -> list[Path]:
    out_dir = Path(out_dir)
    merged = merge_elements(results.values())
    documents = {
        CONTENTS: render_contents(book, results, merged, failures, spent, spent_model),
        CHAPTERS: render_chapters(book, results, failures),
        ELEMENTS: render_elements(book, merged),
    }
    paths = []
    for name, text in documents.items():
        write_atomic(out_dir / name, text)
        paths.append(out_dir / name)
    return paths
