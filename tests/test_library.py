"""Several books in one run: one pool of workers, one pace per API key, bad books skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imaginize.analysis.providers import ProviderConfig, ProviderKind
from imaginize.coordination.store import ManifestStore
from imaginize.run import RunOptions, library_out_dirs, run_book
from tests.epubs import build_epub
from tests.fake_openai import FakeOpenAI
from tests.replies import answer, chapter_text
from tests.test_cli import CLEAN_ENV, ROOT, SAMPLE

STORY = (
    "<p>The red kite rose over the green hill while Mara ran below with the string.</p>"
    "<p>At dusk the lanterns of the village glowed amber along the grey harbour wall.</p>"
)


def library(tmp_path: Path) -> Path:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(SAMPLE, shelf / "a-orchard.epub")
    build_epub(
        shelf / "b-kites.epub",
        [(f"Chapter {n}", STORY) for n in range(1, 4)],
        title="Kites",
    )
    (shelf / "c-broken.epub").write_bytes(b"PK\x03\x04 not really a zip")
    return shelf


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imaginize", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        env=CLEAN_ENV,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_a_folder_of_books_with_one_pool(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer)
    shelf = library(tmp_path)
    out = tmp_path / "out"
    result = run(shelf, "-o", out, "--base-url", fake_openai.url, "-j", "3", "--batch-delay", "0")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imaginize: error: ") and "c-broken.epub" in last
    assert "Traceback" not in result.stderr
    for folder, chapters in (("imaginize_a-orchard", 8), ("imaginize_b-kites", 3)):
        assert len(list((out / folder / "chapters").glob("*.json"))) == chapters
        assert (out / folder / "Contents.md").is_file()
    chats = [r for r in fake_openai.requests if r["endpoint"] == "chat"]
    assert len(chats) == 8 + 3  # every chapter of both books once
    for book, folder, chapters in (
        ("a-orchard.epub", "imaginize_a-orchard", 8),
        ("b-kites.epub", "imaginize_b-kites", 3),
    ):
        status = json.loads(run("status", shelf / book, "-o", out / folder, "--json").stdout)
        assert status["totals"]["completed"] == chapters


@pytest.mark.slow
def test_the_pace_is_shared_across_books(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.script(responder=answer)
    shelf = library(tmp_path)
    (shelf / "c-broken.epub").unlink()
    out = tmp_path / "out"
    pace = ["--tier", "free", "--batch-size", "2", "--batch-delay", "0.8", "-j", "2"]
    result = run(
        shelf / "a-orchard.epub",
        shelf / "b-kites.epub",
        "-o",
        out,
        "--base-url",
        fake_openai.url,
        "--chapters",
        "1-3",
        *pace,
    )
    assert result.returncode == 0, result.stderr
    sends = sorted(r["t_mono"] for r in fake_openai.requests if r["endpoint"] == "chat")
    assert len(sends) == 6
    # Batches of two over both books together, 0.8 s after each batch's last send.
    for first, third in zip(sends, sends[2:], strict=False):
        assert third - first >= 0.8 - 0.1


SLOW = "<p>The tide crept slowly over the black rocks while the gulls wheeled and cried above.</p>"


@pytest.mark.slow
def test_a_short_lease_is_kept_alive_for_library_callers(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Chapter 2 takes 2 s, twice the lease; the worker done with chapter 1 keeps looking.
    # The heartbeat and the idle poll follow the lease for every caller, not the CLI's only,
    # so chapter 2's claim stays live and nobody takes it over.
    def replies(body: Any) -> dict[str, Any]:
        step = answer(body)
        return step | {"delay": 2.0} if "slowly" in chapter_text(body) else step

    fake_openai.script(responder=replies)
    book = build_epub(
        tmp_path / "tides.epub", [("Chapter 1", STORY), ("Chapter 2", SLOW)], title="Tides"
    )
    provider = ProviderConfig(ProviderKind.OPENAI, "fake", api_key="test", base_url=fake_openai.url)
    options = RunOptions.of(out_dir=tmp_path / "out", provider=provider, concurrent=2, lease=1.0)
    claims = options.settings.claims
    assert claims.heartbeat > claims.lease  # the defaults alone would lose the claim
    finished = run_book(book, options)
    assert finished.completed == 2
    assert len([r for r in fake_openai.requests if r["endpoint"] == "chat"]) == 2
    manifest = ManifestStore(tmp_path / "out").read()
    assert manifest is not None
    assert [e.attempts for e in manifest.chapters] == [1, 1]


@pytest.mark.slow
def test_books_with_one_name_get_folders_of_their_own(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(SAMPLE, tmp_path / "a" / "book.epub")
    build_epub(tmp_path / "b" / "book.epub", [("Chapter 1", STORY)], title="Kites")
    out = tmp_path / "out"
    result = run(tmp_path / "a" / "book.epub", tmp_path / "b" / "book.epub", "-o", out)
    assert result.returncode == 0, result.stderr
    for folder, title, chapters in (
        ("imaginize_book", "Lanternfruit", 8),
        ("imaginize_book-2", "Kites", 1),
    ):
        assert (
            title
            in json.loads((out / folder / ".imaginize.manifest.json").read_text())["book"]["title"]
        )
        assert len(list((out / folder / "chapters").glob("*.json"))) == chapters


def test_folder_names_are_unique_in_argument_order(tmp_path: Path) -> None:
    books = [tmp_path / "a" / "book.epub", tmp_path / "b" / "book.epub", tmp_path / "book-2.epub"]
    names = [p.name for p in library_out_dirs(books, tmp_path / "out")]
    assert names == ["imaginize_book", "imaginize_book-2", "imaginize_book-2-2"]
    beside = library_out_dirs([tmp_path / "a" / "book.epub", tmp_path / "b" / "book.epub"], None)
    assert beside == [tmp_path / "a" / "imaginize_book", tmp_path / "b" / "imaginize_book"]


@pytest.mark.slow
def test_a_book_whose_manifest_cannot_be_joined_is_skipped(tmp_path: Path) -> None:
    shelf = library(tmp_path)
    (shelf / "c-broken.epub").unlink()
    out = tmp_path / "out"
    # The orchard's folder already belongs to another book.
    taken = out / "imaginize_a-orchard"
    shutil.copytree(tmp_path / "shelf", tmp_path / "other")
    first = run(tmp_path / "other" / "b-kites.epub", "-o", taken)
    assert first.returncode == 0, first.stderr
    result = run(shelf, "-o", out)
    assert result.returncode == 2, result.stderr  # a skipped book is reported as such
    assert "Traceback" not in result.stderr
    assert "skipping" in result.stderr and "belongs to a different book" in result.stderr
    assert len(list((out / "imaginize_b-kites" / "chapters").glob("*.json"))) == 3
    assert (out / "imaginize_b-kites" / "Contents.md").is_file()
