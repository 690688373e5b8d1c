"""Per-chapter result files: round trip, atomic writes, corrupt files reported and skipped."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaginize.analysis.providers import ProviderKind, resolve_provider
from imaginize.coordination.store import ManifestStore
from imaginize.guides.results import (
    CHAPTERS_DIR,
    CorruptResult,
    Provenance,
    load_results,
    read_result,
    result_path,
    write_result,
)
from imaginize.model import ChapterResult, Element, ElementKind, Scene, Usage
from imaginize.reading.epub import book_fingerprint
from imaginize.settings import RunSettings
from imaginize.workers.spec import WorkerSpec
from imaginize.workers.worker import run_worker
from tests.epubs import build_epub

_TEXT = st.text(max_size=40)  # any unicode (no lone surrogates), newlines and quotes included
_NAMES = st.lists(_TEXT, max_size=3).map(tuple)

_SCENES = st.builds(
    Scene,
    quote=_TEXT,
    description=_TEXT,
    composition=_TEXT,
    characters=_NAMES,
    setting=_TEXT,
    lighting=_TEXT,
    mood=_TEXT,
    image_prompt=_TEXT,
)
_ELEMENTS = st.builds(
    Element,
    name=_TEXT,
    kind=st.sampled_from(ElementKind),
    description=_TEXT,
    aliases=_NAMES,
    quotes=_NAMES,
)
_RESULTS = st.builds(
    ChapterResult,
    chapter=st.integers(min_value=1, max_value=2000),
    title=_TEXT,
    words=st.integers(min_value=0, max_value=10**6),
    provider=st.sampled_from(["openai", "offline"]),
    model=_TEXT,
    scenes=st.lists(_SCENES, max_size=3).map(tuple),
    elements=st.lists(_ELEMENTS, max_size=3).map(tuple),
    usage=st.builds(Usage, st.integers(0, 10**7), st.integers(0, 10**7)),
    dropped_quotes=st.integers(0, 50),
    book_sha256=st.one_of(st.just(""), st.text("0123456789abcdef", min_size=64, max_size=64)),
)


def _result(chapter: int = 1, **changes: object) -> ChapterResult:
    fields: dict[str, object] = {
        "chapter": chapter,
        "title": f"Chapter {chapter}",
        "words": 1200,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "scenes": (Scene(quote="The lanterns went out.", description="Dark street."),),
        "elements": (Element(name="Mira", kind=ElementKind.CHARACTER, aliases=("the girl",)),),
        "usage": Usage(1000, 200),
        "dropped_quotes": 1,
    }
    fields.update(changes)
    return ChapterResult(**fields)  # type: ignore[arg-type]


def test_result_path_is_zero_padded_under_chapters(tmp_path: Path) -> None:
    assert result_path(tmp_path, 7) == tmp_path / CHAPTERS_DIR / "007.json"
    assert result_path(tmp_path, 1234) == tmp_path / CHAPTERS_DIR / "1234.json"


def test_write_then_read_gives_the_same_result(tmp_path: Path) -> None:
    result = _result(3, title="Ünïcödé \u201cquoted\u201d\nand a newline", words=0)
    path = write_result(tmp_path, result)
    assert path == result_path(tmp_path, 3)
    assert read_result(path) == result
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == 1
    assert data["usage"] == {"promptTokens": 1000, "completionTokens": 200, "totalTokens": 1200}
    assert "Ünïcödé" in path.read_text(encoding="utf-8")  # stored readable, not \\u-escaped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result=_RESULTS)
@pytest.mark.slow
def test_any_result_round_trips(result: ChapterResult) -> None:
    # fsync is what makes the write durable, not what makes it readable: skipped for speed.
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch("imaginize.coordination.atomic.os.fsync"),
    ):
        out = Path(folder)
        write_result(out, result)
        assert read_result(result_path(out, result.chapter)) == result
        results, problems = load_results(out)
        assert results == {result.chapter: result}
        assert problems == []


def test_writing_leaves_no_temp_files_and_replaces_the_old_result(tmp_path: Path) -> None:
    write_result(tmp_path, _result(2, title="first"))
    write_result(tmp_path, _result(2, title="second"))
    assert sorted(p.name for p in (tmp_path / CHAPTERS_DIR).iterdir()) == ["002.json"]
    assert read_result(result_path(tmp_path, 2)).title == "second"


def test_load_results_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert load_results(tmp_path / "nowhere") == ({}, [])


def test_load_results_reads_every_chapter(tmp_path: Path) -> None:
    for chapter in (3, 1, 12):
        write_result(tmp_path, _result(chapter))
    results, problems = load_results(tmp_path)
    assert sorted(results) == [1, 3, 12]
    assert results[12] == _result(12)
    assert problems == []


@pytest.mark.parametrize(
    "content",
    [
        "",
        '{"format": 1, "chapter": 2, "title": "Trunc',
        "not json at all",
        "[]",
        "null",
        '{"format": 99, "chapter": 2}',
        '{"format": 1, "chapter": 2}',
        '{"format": 1, "chapter": "two", "title": "", "provider": "", "model": "",'
        ' "scenes": [], "elements": []}',
        '{"format": 1, "chapter": 2, "title": "", "provider": "", "model": "",'
        ' "scenes": ["a scene"], "elements": []}',
        '{"format": 1, "chapter": 2, "title": "", "provider": "", "model": "",'
        ' "scenes": [], "elements": [{"name": "X", "kind": "vibe"}]}',
        '{"format": 1, "chapter": 2, "title": "", "provider": "", "model": "",'
        ' "scenes": [], "elements": [], "usage": []}',
    ],
)
def test_a_corrupt_result_is_reported_and_skipped(tmp_path: Path, content: str) -> None:
    write_result(tmp_path, _result(1))
    write_result(tmp_path, _result(3))
    broken = result_path(tmp_path, 2)
    broken.write_text(content, encoding="utf-8")
    with pytest.raises(CorruptResult, match=r"002\.json"):
        read_result(broken)
    results, problems = load_results(tmp_path)
    assert sorted(results) == [1, 3]
    assert len(problems) == 1
    assert "002.json" in problems[0]


def test_a_truncated_real_result_is_reported(tmp_path: Path) -> None:
    path = write_result(tmp_path, _result(4))
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    results, problems = load_results(tmp_path)
    assert results == {}
    assert len(problems) == 1 and "004.json" in problems[0]


def test_undecodable_bytes_are_reported(tmp_path: Path) -> None:
    path = write_result(tmp_path, _result(5))
    path.write_bytes(b"\xff\xfe\x00garbage")
    results, problems = load_results(tmp_path)
    assert results == {}
    assert len(problems) == 1


def test_a_file_holding_another_chapter_is_reported_not_used(tmp_path: Path) -> None:
    write_result(tmp_path, _result(1, title="real one"))
    stray = tmp_path / CHAPTERS_DIR / "001 copy.json"
    stray.write_text(json.dumps(_result(1, title="old copy").to_json()), encoding="utf-8")
    renamed = result_path(tmp_path, 2)
    renamed.write_text(json.dumps(_result(3).to_json()), encoding="utf-8")
    results, problems = load_results(tmp_path)
    assert results == {1: _result(1, title="real one")}
    assert sorted(Path(p.split(":")[0]).name for p in problems) == ["001 copy.json", "002.json"]


def test_temp_files_and_other_files_are_not_results(tmp_path: Path) -> None:
    write_result(tmp_path, _result(1))
    folder = tmp_path / CHAPTERS_DIR
    (folder / ".001.json.abc123.tmp").write_text("{", encoding="utf-8")
    (folder / "notes.json").write_text("{", encoding="utf-8")
    results, problems = load_results(tmp_path)
    assert list(results) == [1]
    assert problems == []


BOOK = "5f2c" * 16
OTHER = "a1b2" * 16


def test_a_result_carries_its_books_hash_and_an_older_one_reads_without(tmp_path: Path) -> None:
    path = write_result(tmp_path, _result(2, book_sha256=BOOK))
    assert json.loads(path.read_text(encoding="utf-8"))["bookSha256"] == BOOK
    assert read_result(path).book_sha256 == BOOK
    older = _result(2).to_json()  # as imaginize wrote results before the hash
    assert "bookSha256" not in older
    path.write_text(json.dumps(older), encoding="utf-8")
    assert read_result(path) == _result(2, book_sha256="")


def test_a_book_hash_that_is_not_a_string_is_corrupt(tmp_path: Path) -> None:
    data = _result(2, book_sha256=BOOK).to_json()
    data["bookSha256"] = 12
    path = result_path(tmp_path, 2)
    path.parent.mkdir()
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CorruptResult, match="bookSha256"):
        read_result(path)


@pytest.mark.parametrize(
    ("stamp", "named", "trusted", "refusal"),
    [
        (BOOK, 3, (), None),
        (OTHER, 3, (3,), "belongs to another book (sha256 a1b2a1b2a1b2...)"),
        (BOOK, 5, (3,), "holds chapter 5, not chapter 3"),
        ("", 3, (3,), None),
        ("", 3, (4,), "has no book hash (an older imaginize wrote it)"),
    ],
)
def test_provenance_takes_only_this_books_file_of_that_chapter(
    stamp: str, named: int, trusted: tuple[int, ...], refusal: str | None
) -> None:
    got = Provenance(BOOK, frozenset(trusted)).refusal(_result(named, book_sha256=stamp), 3)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and got.startswith(refusal)


def test_the_merge_leaves_out_what_is_not_this_books(tmp_path: Path) -> None:
    write_result(tmp_path, _result(1, book_sha256=BOOK))
    write_result(tmp_path, _result(2, book_sha256=OTHER))
    write_result(tmp_path, _result(3))  # an older file, recorded done in the manifest
    write_result(tmp_path, _result(4))  # an older file, not recorded done
    results, problems = load_results(tmp_path, Provenance(BOOK, frozenset({1, 3})))
    assert sorted(results) == [1, 3]
    assert [p.split(" ")[0] for p in problems] == [
        str(result_path(tmp_path, 2)),
        str(result_path(tmp_path, 4)),
    ]
    assert "another book" in problems[0] and problems[0].endswith("left out of the guides")
    # Without a provenance (the book is not known) every readable file of its chapter counts.
    assert sorted(load_results(tmp_path)[0]) == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_worker_stamps_its_results_even_from_a_spec_made_by_hand(tmp_path: Path) -> None:
    book = build_epub(tmp_path / "b.epub", [("Chapter 1", "<p>A red kite over the hill.</p>")])
    out = tmp_path / "out"
    sha = book_fingerprint(book)
    ManifestStore(out).join(book_path=str(book), sha256=sha, title="B", chapters=[(1, "C")])
    spec = WorkerSpec(str(book), str(out), RunSettings(resolve_provider(ProviderKind.OFFLINE)))
    assert spec.book_sha256 == ""
    assert run_worker(spec, "w1") == 1
    assert read_result(result_path(out, 1)).book_sha256 == sha
