"""Per-chapter result files: `chapters/NNN.json` in the output folder.

A result file exists only once its chapter is finished (it is written atomically), so its
presence is the durable record of finished work: a crash at any moment loses at most the
chapters still being analysed.

A result file names its chapter and carries the sha256 of the book it was analysed from
(`bookSha256`), so a file left in a folder by another book, or copied under another chapter's
name, is never taken for this book's (`Provenance`). A file of an older imaginize has no hash:
it counts only for a chapter this book's manifest already records as completed.

A scene's image (--images) has its record (file, prompt, model, size) beside it,
`images/chapter_NNN_scene_M.json`, written by the image worker alone: a chapter's result file
has one writer. `load_results` gives each chapter its images' records; records an older
imaginize wrote into the chapter's result file are read as a fallback.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

from imaginize.coordination.atomic import write_json_atomic
from imaginize.model import ChapterResult, ImageRecord

CHAPTERS_DIR = "chapters"
IMAGES_DIR = "images"


class CorruptResult(ValueError):
    """A result file that cannot be read back; its chapter must be analysed again."""


def result_path(out_dir: Path, chapter: int) -> Path:
    return Path(out_dir) / CHAPTERS_DIR / f"{chapter:03d}.json"


def write_result(out_dir: Path, result: ChapterResult) -> Path:
    path = result_path(out_dir, result.chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result.to_json())
    return path


def read_result(path: Path) -> ChapterResult:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return ChapterResult.from_json(data)
    # AttributeError: valid JSON of the wrong shape, e.g. a list where an object belongs.
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptResult(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class Provenance:
    """Which result files are this book's: those stamped with its sha256, and files without a
    hash (an older imaginize wrote them) only for the chapters in `trusted`, which this book's
    manifest records as completed; no other evidence ties such a file to this book."""

    sha256: str
    trusted: Collection[int] = frozenset()

    def refusal(self, result: ChapterResult, chapter: int) -> str | None:
        """Why `result`, read from chapter `chapter`'s file, is not this book's result for
        that chapter (to follow the file's path in a message); None when it is."""
        if result.chapter != chapter:
            return f"holds chapter {result.chapter}, not chapter {chapter}"
        if result.book_sha256 == self.sha256:
            return None
        if result.book_sha256:
            return f"belongs to another book (sha256 {result.book_sha256[:12]}...)"
        if chapter in self.trusted:
            return None
        return "has no book hash (an older imaginize wrote it) and no manifest of this book vouches"


def load_results(
    out_dir: Path, provenance: Provenance | None = None
) -> tuple[dict[int, ChapterResult], list[str]]:
    """All readable results by chapter number, and a message per file left out: unreadable,
    stray, or (with `provenance`) not this book's."""
    results: dict[int, ChapterResult] = {}
    problems: list[str] = []
    folder = Path(out_dir) / CHAPTERS_DIR
    if not folder.is_dir():
        return results, problems
    for path in sorted(folder.glob("[0-9][0-9][0-9]*.json")):
        try:
            result = read_result(path)
        except CorruptResult as exc:
            problems.append(str(exc))
            continue
        if path.name != result_path(out_dir, result.chapter).name:
            # A stray copy ("001 copy.json") or a file renamed by hand: its chapter is not
            # the one its name promises, and it must not stand in for another chapter's file.
            problems.append(f"{path}: holds chapter {result.chapter}, not the one its name says")
            continue
        refusal = provenance.refusal(result, result.chapter) if provenance else None
        if refusal is not None:
            problems.append(f"{path} {refusal}; left out of the guides")
            continue
        results[result.chapter] = with_image_records(out_dir, result)
    return results, problems


# --- image records ---------------------------------------------------------------------------


def image_stem(chapter: int, scene: int) -> str:
    return f"chapter_{chapter:03d}_scene_{scene}"


def image_record_path(out_dir: Path, chapter: int, scene: int) -> Path:
    return Path(out_dir) / IMAGES_DIR / f"{image_stem(chapter, scene)}.json"


def write_image_record(out_dir: Path, chapter: int, record: ImageRecord) -> Path:
    path = image_record_path(out_dir, chapter, record.scene)
    write_json_atomic(path, record.to_json())
    return path


def with_image_records(out_dir: Path, result: ChapterResult) -> ChapterResult:
    """The chapter's result with the records of its scenes' images: each scene's record file
    whose image is there, else the record in the result file (an older imaginize's)."""
    records = {i.scene: i for i in result.images}
    found = False
    for scene in range(1, len(result.scenes) + 1):
        path = image_record_path(out_dir, result.chapter, scene)
        if not path.exists():
            continue
        try:
            record = ImageRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable: as if not made (the old record, if any, stands)
        # A record is written before its image is renamed into place (`publish_image`).
        if record.scene == scene and (Path(out_dir) / record.file).exists():
            records[scene], found = record, True
    if not found:
        return result
    return replace(result, images=tuple(records[s] for s in sorted(records)))
