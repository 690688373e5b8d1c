"""The offline catalogue's cache file (`imaginize.analysis.offline.cache`): reused for the same
book and analyzer, rebuilt for anything else in it, built once by concurrent processes, and
the analysis the same whether the catalogue was built or loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imaginize.analysis.offline import cache
from imaginize.analysis.offline.analyzer import OfflineAnalyzer
from imaginize.analysis.offline.catalogue import Catalogue
from imaginize.analysis.pipeline import analyze_chapter
from imaginize.reading.epub import read_book

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "the-lanternfruit-orchard.epub"

OTHER = [
    "Captain Orrin Vale was tall and gaunt, with a long silver beard. Vale climbed the stair.",
    '"Is the lamp lit?" asked Vale. Vale lit the lamp. Vale said nothing more to anyone.',
    "Mira Quill wore a yellow coat. Mira ran along the quay. Mira waved at Vale.",
]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [c.text for c in read_book(SAMPLE).chapters]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many catalogues were built (not loaded) since the test began."""
    calls: list[int] = []
    real = Catalogue._build

    def counting(self: Catalogue, texts: list[str]) -> object:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(Catalogue, "_build", counting)
    return calls


def same(a: Catalogue, b: Catalogue) -> bool:
    return a.entries == b.entries and a.figures == b.figures and a.to_json() == b.to_json()


def test_a_second_call_loads_what_the_first_built(
    tmp_path: Path, texts: list[str], builds: list[int]
) -> None:
    first = cache.book_catalogue(texts, tmp_path)
    assert builds == [len(texts)]
    assert (tmp_path / cache.CACHE_NAME).is_file()
    second = cache.book_catalogue(texts, tmp_path)
    assert builds == [len(texts)]  # loaded, not built again
    assert same(first, second)
    assert second.entries  # the sample book has a cast


def test_without_a_folder_nothing_is_written(texts: list[str], builds: list[int]) -> None:
    catalogue = cache.book_catalogue(texts, None)
    assert builds == [len(texts)]
    assert same(catalogue, Catalogue(texts))


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # cut short
        lambda text: "{not json",
        lambda text: "[]",
        lambda text: text.replace('"format":1', '"format":99'),
        lambda text: text.replace('"count":', '"count":"many","was":', 1),
        lambda text: text.replace('"kind":"character"', '"kind":"ghost"', 1),
        lambda text: text.replace('"name_words":[', '"name_words":[7,', 1),
    ],
    ids=["truncated", "garbage", "not-an-object", "format", "count", "kind", "name-words"],
)
def test_a_damaged_file_is_rebuilt_not_trusted(
    tmp_path: Path, texts: list[str], builds: list[int], damage: object
) -> None:
    built = cache.book_catalogue(texts, tmp_path)
    path = tmp_path / cache.CACHE_NAME
    good = path.read_text(encoding="utf-8")
    bad = damage(good)  # type: ignore[operator]
    assert bad != good
    path.write_text(bad, encoding="utf-8")
    again = cache.book_catalogue(texts, tmp_path)
    assert builds == [len(texts), len(texts)]
    assert same(built, again)
    assert path.read_text(encoding="utf-8") == good  # replaced by a whole one


def test_another_books_file_is_not_reused(
    tmp_path: Path, texts: list[str], builds: list[int]
) -> None:
    cache.book_catalogue(texts, tmp_path)
    other = cache.book_catalogue(OTHER, tmp_path)
    # One chapter changed is another book too.
    changed = [*texts[:-1], texts[-1] + "\n\nA last line."]
    cache.book_catalogue(changed, tmp_path)
    assert builds == [len(texts), len(OTHER), len(texts)]
    assert same(other, Catalogue(OTHER))
    assert any("Vale" in e.name for e in other.entries)


def test_another_analyzer_version_is_not_reused(
    tmp_path: Path, texts: list[str], builds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.book_catalogue(texts, tmp_path)
    monkeypatch.setattr(cache, "analyzer_digest", lambda: "a changed analyzer")
    cache.book_catalogue(texts, tmp_path)
    assert len(builds) == 2


def test_a_failed_write_leaves_no_file_and_the_run_goes_on(
    tmp_path: Path, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    catalogue = cache.book_catalogue(texts, tmp_path)
    assert catalogue.entries
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache.LOCK_NAME]


def test_the_analysis_is_the_same_built_or_loaded(tmp_path: Path) -> None:
    book = read_book(SAMPLE)
    built = OfflineAnalyzer(book, cache_dir=tmp_path)
    first = [analyze_chapter(c, built) for c in book.chapters]
    assert (tmp_path / cache.CACHE_NAME).is_file()
    loaded = OfflineAnalyzer(book, cache_dir=tmp_path)
    assert loaded.catalogue is not None and not loaded.catalogue._split  # from the file
    assert [analyze_chapter(c, loaded) for c in book.chapters] == first
    plain = OfflineAnalyzer(book)
    assert [analyze_chapter(c, plain) for c in book.chapters] == first


# Run in each child: wait for the barrier, get the catalogue, say whether it was built.
_CHILD = """
import json, sys, time
from pathlib import Path
from imaginize.analysis.offline import cache
from imaginize.analysis.offline.catalogue import Catalogue
from imaginize.reading.epub import read_book
texts = [c.text for c in read_book(sys.argv[1]).chapters]
folder, barrier = Path(sys.argv[2]), Path(sys.argv[3])
built = []
real = Catalogue._build
def counting(self, texts):
    built.append(1)
    time.sleep(0.5)  # a build long enough for the others to arrive while it runs
    return real(self, texts)
Catalogue._build = counting
print("ready", flush=True)
deadline = time.monotonic() + 60
while not barrier.exists():
    if time.monotonic() > deadline:
        sys.exit("no barrier")
    time.sleep(0.01)
catalogue = cache.book_catalogue(texts, folder)
print(json.dumps({"built": len(built), "catalogue": catalogue.to_json()}), flush=True)
"""


def test_concurrent_processes_build_it_once(tmp_path: Path, texts: list[str]) -> None:
    barrier = tmp_path / "go"
    folder = tmp_path / "out"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(SAMPLE), str(folder), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        barrier.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(r["built"] for r in results) == 1
    assert all(r["catalogue"] == Catalogue(texts).to_json() for r in results)
    assert cache.load(folder, cache.catalogue_key(texts)) is not None


# Run in the child: build, then hang where the file would be renamed into place.
_KILLED = """
import os, sys, time
from pathlib import Path
from imaginize.analysis.offline import cache
from imaginize.reading.epub import read_book
texts = [c.text for c in read_book(sys.argv[1]).chapters]
def hang(src, dst):
    print("written", flush=True)
    time.sleep(120)
os.replace = hang
cache.book_catalogue(texts, Path(sys.argv[2]))
"""


def test_a_writer_killed_mid_write_leaves_no_file(tmp_path: Path, texts: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(SAMPLE), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert not (tmp_path / cache.CACHE_NAME).exists()  # only its temp file, never a half one
    catalogue = cache.book_catalogue(texts, tmp_path)  # the lock died with its holder
    assert cache.load(tmp_path, cache.catalogue_key(texts)) is not None
    assert same(catalogue, Catalogue(texts))
