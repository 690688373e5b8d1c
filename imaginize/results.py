"""Per-chapter result files: `chapters/NNN.json` in the output folder.

A result file exists only once its chapter is finished (it is written atomically), so its
presence is the durable record of finished work: a crash at any moment loses at most the
chapters still being analysed.
"""

from __future__ import annotations

import json
from pathlib import Path

from imaginize.atomic import write_json_atomic
from imaginize.model import ChapterResult

CHAPTERS_DIR = "chapters"


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


def load_results(out_dir: Path) -> tuple[dict[int, ChapterResult], list[str]]:
    """All readable results by chapter number, and a message per unreadable file."""
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
        results[result.chapter] = result
    return results, problems
