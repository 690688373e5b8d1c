"""--images: one illustration per scene, each a unit of work claimed like a chapter.

Image units live in their own manifest (`.imaginize.images.json`, same format and rules as the
chapters' one, its own lock), numbered chapter * 1000 + scene. A unit appears once its chapter
is done. A finished image is `images/chapter_NNN_scene_M.<ext>`, the extension read from the
bytes the server sent; its record (prompt, model, size) is beside it,
`images/chapter_NNN_scene_M.json` (`results.write_image_record`), and the guides read it with
its chapter's result. A finished image is never made again unless --force.

`ImageStore` is the image manifest (a `ManifestStore` with `ImageFiles`) plus what only images
do: list a finished chapter's scenes, and publish an image with its record.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from imaginize.analysis.offline.catalogue import look_of
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import fsync_dir, write_atomic
from imaginize.coordination.locking import DEFAULT_LOCK_LIFETIME
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ProviderError
from imaginize.guides.merge import MergedElement, merge_elements, normalise_name
from imaginize.guides.results import (
    IMAGES_DIR,
    CorruptResult,
    Provenance,
    image_record_path,
    image_stem,
    load_results,
    read_result,
    result_path,
    write_image_record,
)
from imaginize.model import ChapterResult, ImageRecord, Scene
from imaginize.settings import DEFAULT_IMAGE_MODEL

IMAGES_MANIFEST = ".imaginize.images.json"
IMAGES_LOCK = ".imaginize.images.lock"
UNIT_BASE = 1000
# Longest prompt each model accepts, in characters (OpenAI's documented limits).
PROMPT_LIMITS = {"gpt-image-1": 32_000, "dall-e-3": 4_000, "dall-e-2": 1_000}
DEFAULT_PROMPT_LIMIT = 4_000
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ImageOptions:
    model: str = DEFAULT_IMAGE_MODEL
    size: str | None = None
    quality: str | None = None


def unit_id(chapter: int, scene: int) -> int:
    return chapter * UNIT_BASE + scene


def unit_parts(unit: int) -> tuple[int, int]:
    return divmod(unit, UNIT_BASE)


def units_of(result: ChapterResult) -> list[tuple[int, str]]:
    return [
        (unit_id(result.chapter, index), f"Chapter {result.chapter}, scene {index}")
        for index in range(1, min(len(result.scenes), UNIT_BASE - 1) + 1)
    ]


def detect_extension(data: bytes) -> str:
    """The file type the bytes really are, not the one asked for."""
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise ProviderError("the server sent an image in an unknown format", retryable=True)


def existing_image(out_dir: Path, unit: int) -> Path | None:
    stem = image_stem(*unit_parts(unit))
    for ext in ("png", "jpg", "webp"):
        path = Path(out_dir) / IMAGES_DIR / f"{stem}.{ext}"
        if path.exists():
            return path
    return None


class ImageFiles:
    """What an image unit leaves on disk (`store.UnitFiles`): its image, finished as it is,
    and the image's record beside it."""

    manifest_name = IMAGES_MANIFEST
    lock_name = IMAGES_LOCK
    results_dir = IMAGES_DIR

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def finished(
        self, numbers: Iterable[int], ours: Provenance, refused: dict[int, str] | None = None
    ) -> dict[int, int]:
        # An image is this book's when it is in this book's folder: it names no book.
        return self.drawn(numbers)

    def drawn(self, numbers: Iterable[int]) -> dict[int, int]:
        """The units among `numbers` whose image is there (an image uses no tokens)."""
        return {n: 0 for n in numbers if existing_image(self.out_dir, n) is not None}

    def result_files(self, number: int) -> list[Path]:
        found = existing_image(self.out_dir, number)
        record = image_record_path(self.out_dir, *unit_parts(number))
        return ([found] if found else []) + [record]

    def after_failure(self, manifest: mf.Manifest, number: int) -> mf.Manifest:
        """A unit whose scene is gone from its chapter's result is dropped, as the chapter's
        sync would have dropped it."""
        return _without(manifest, number) if _scene_gone(self.out_dir, number) else manifest


class ImageStore:
    """The image units' manifest (`manifest`: join, claim, heartbeat, fail, release as for
    chapters) and the operations only images have."""

    lock_name = IMAGES_LOCK

    def __init__(
        self,
        out_dir: Path,
        *,
        lock_lifetime: float = DEFAULT_LOCK_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.files = files = ImageFiles(self.out_dir)
        self.manifest = ManifestStore(
            self.out_dir, files=files, lock_lifetime=lock_lifetime, clock=clock
        )
        self.path, self.lock_path = self.manifest.path, self.manifest.lock_path

    def read(self) -> mf.Manifest | None:
        return self.manifest.read()

    def add_units(self, units: list[tuple[int, str]]) -> None:
        """List units that are not listed yet (a chapter just finished); changes nothing
        else. A no-op without a manifest (images were not asked for on this book)."""
        if not units or not self.path.exists():
            return
        known = self.read()
        if known is not None and {n for n, _ in units} <= {e.number for e in known.chapters}:
            return  # the common case, decided without the lock
        self.manifest.transact(lambda m: (_with_units(m, units, self.files.drawn), None))

    def sync_units(self, chapters: Iterable[int]) -> None:
        """Make each chapter's units exactly those its result file calls for (a chapter just
        finished, maybe with fewer scenes than before): the missing ones are added, the others
        dropped unless in progress. A chapter without a readable result (being redone) is left
        as it is. The results are read under the lock, so the last sync wins with the newest
        result. A no-op without a manifest (images were not asked for on this book)."""
        chapters = sorted(set(chapters))
        if not chapters or not self.path.exists():
            return
        known = self.read()
        if known is not None and all(self._listed_as_expected(known, c) for c in chapters):
            return  # the common case, decided without the lock

        def change(current: mf.Manifest) -> tuple[mf.Manifest, None]:
            expected = {c: _expected(self.out_dir, c) for c in chapters}
            found = {c: units for c, units in expected.items() if units is not None}
            return with_chapter_units(current, found, self.files.drawn), None

        self.manifest.transact(change)

    def _listed_as_expected(self, manifest: mf.Manifest, chapter: int) -> bool:
        units = _expected(self.out_dir, chapter)
        listed = {e.number for e in manifest.chapters if unit_parts(e.number)[0] == chapter}
        return units is None or listed == {n for n, _ in units}

    def publish_image(
        self, number: int, token: int, staged: Path, final: Path, record: ImageRecord
    ) -> str | None:
        """Make the staged image the scene's image with its record beside it and mark the unit
        completed, all in one critical section, if the claim is still ours and the scene still
        exists; otherwise discard the staged file. None when published, else why not. A unit
        whose scene is gone is dropped; one whose chapter has no result any more (being
        redone) is given back, to be drawn from the new result."""
        chapter, scene = unit_parts(number)

        def change(current: mf.Manifest) -> tuple[mf.Manifest, str | None]:
            if mf.owned(current, number, token) is None:
                return current, f"claim {token} was taken over"
            try:
                result = read_result(result_path(self.out_dir, chapter))
            except CorruptResult:
                updated, _ = mf.release(current, number, token)
                return updated, f"chapter {chapter} has no result to record it in (being redone?)"
            if not 1 <= scene <= len(result.scenes):
                return _without(current, number), f"chapter {chapter} has no scene {scene} any more"
            updated, _ = mf.complete(current, number, token, self.manifest.clock(), 0)
            # The record first: an image is finished once its file is there, and a crash
            # between the two leaves a record without its image, which is drawn again.
            write_image_record(self.out_dir, chapter, record)
            os.replace(staged, final)
            fsync_dir(final.parent)
            return updated, None

        try:
            return self.manifest.transact(change)
        finally:
            if staged.exists():
                staged.unlink()


def _expected(out_dir: Path, chapter: int) -> list[tuple[int, str]] | None:
    """The units the chapter's result file calls for; None without a readable one."""
    try:
        return units_of(read_result(result_path(out_dir, chapter)))
    except CorruptResult:
        return None


def _scene_gone(out_dir: Path, unit: int) -> bool:
    """Whether the unit's chapter has a readable result without this scene."""
    units = _expected(out_dir, unit_parts(unit)[0])
    return units is not None and unit not in {n for n, _ in units}


def _without(manifest: mf.Manifest, number: int) -> mf.Manifest:
    return replace(manifest, chapters=tuple(e for e in manifest.chapters if e.number != number))


def with_chapter_units(
    manifest: mf.Manifest,
    units: Mapping[int, list[tuple[int, str]]],
    finished: Callable[[Iterable[int]], dict[int, int]],
) -> mf.Manifest:
    """The image manifest with each chapter's units (`units` by chapter) exactly those given:
    the missing ones added (one whose image file is there is completed), the chapter's others
    dropped unless in progress. An in-progress unit stays for its worker's fenced calls, which
    drop it when they find its scene gone (`ImageFiles.after_failure`, `ImageStore.publish_image`).
    Chapters not in `units` keep theirs."""
    keep = {n for listed in units.values() for n, _ in listed}
    kept = tuple(
        e
        for e in manifest.chapters
        if unit_parts(e.number)[0] not in units
        or e.number in keep
        or e.status is mf.Status.IN_PROGRESS
    )
    added = [unit for chapter in sorted(units) for unit in units[chapter]]
    return _with_units(replace(manifest, chapters=kept), added, finished)


def _with_units(
    manifest: mf.Manifest,
    units: list[tuple[int, str]],
    finished: Callable[[Iterable[int]], dict[int, int]],
) -> mf.Manifest:
    numbers = {e.number for e in manifest.chapters} | {n for n, _ in units}
    return mf.reconcile(manifest, units, finished(numbers))


def expected_units(out_dir: Path, chapters: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """Every image unit the finished chapters (among `chapters`, None: all) call for."""
    results, _ = load_results(out_dir)
    selected = None if chapters is None else set(chapters)
    return [
        unit
        for number in sorted(results)
        if selected is None or number in selected
        for unit in units_of(results[number])
    ]


def wanted_units(
    listed: mf.Manifest | ImageStore | None, chapters: Iterable[int] | None
) -> tuple[int, ...] | None:
    """The listed image units of `chapters`, as `wanted` for the manifest's functions
    (`settled`, `claim`); None (every unit) when `chapters` is None. `listed` is the image
    manifest or its store (read without the lock); with neither there are no units."""
    if chapters is None:
        return None
    if isinstance(listed, ImageStore):
        listed = listed.read()
    if listed is None:
        return ()
    selected = set(chapters)
    return tuple(e.number for e in listed.chapters if unit_parts(e.number)[0] in selected)


# --- prompts ------------------------------------------------------------------------------


def elements_in(scene: Scene, merged: Iterable[MergedElement]) -> list[MergedElement]:
    """The book's elements that appear in this scene: named among its characters, or named
    in its quote or setting."""
    named = {normalise_name(c) for c in scene.characters}
    text = f" {normalise_name(scene.quote + ' ' + scene.setting)} "
    present = []
    for element in merged:
        keys = {normalise_name(n) for n in (element.name, *element.aliases)} - {""}
        if keys & named or any(f" {key} " in text for key in keys):
            present.append(element)
    return present


def build_prompt(scene: Scene, merged: Iterable[MergedElement], model: str) -> str:
    """The scene's prompt plus the book-wide look of everything in it, so a character looks
    the same from chapter to chapter; cut at a sentence end to fit the model's limit."""
    base = (scene.image_prompt or scene.description or scene.quote).strip()
    sentences = [base if base.endswith((".", "!", "?")) else base + "."]
    for element in elements_in(scene, merged):
        look = look_of(element.description).rstrip(".")
        if look:
            sentences.append(f"{element.name} ({element.kind.value}): {look}.")
    limit = PROMPT_LIMITS.get(model, DEFAULT_PROMPT_LIMIT)
    return fit(" ".join(sentences), limit)


def fit(text: str, limit: int) -> str:
    """`text` cut at the last sentence end that fits in `limit` characters (at a word end when
    even the first sentence is too long)."""
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > limit:
            break
        kept = candidate
    if kept:
        return kept
    return text[:limit].rsplit(" ", 1)[0]


def prompt_for(out_dir: Path, unit: int, model: str) -> tuple[ChapterResult, str]:
    chapter, scene = unit_parts(unit)
    result = read_result(result_path(out_dir, chapter))
    if scene > len(result.scenes):
        raise ProviderError(f"chapter {chapter} has no scene {scene} any more")
    results, _ = load_results(out_dir)
    merged = merge_elements(results.values())
    return result, build_prompt(result.scenes[scene - 1], merged, model)


def write_prompt_files(out_dir: Path, model: str) -> list[Path]:
    """For the offline analyzer: the prompt each scene's image would get, as text files."""
    folder = Path(out_dir) / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    results, _ = load_results(out_dir)
    merged = merge_elements(results.values())
    written = []
    for number in sorted(results):
        for index, scene in enumerate(results[number].scenes, start=1):
            path = folder / f"{image_stem(number, index)}.txt"
            write_atomic(path, build_prompt(scene, merged, model) + "\n")
            written.append(path)
    return written
