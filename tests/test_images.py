"""--images: units of work like chapters, files typed by their bytes, prompts within limits."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from imaginize import run
from imaginize.analysis.providers import ProviderKind, resolve_provider
from imaginize.coordination import manifest as mf
from imaginize.errors import ProviderError
from imaginize.events import ignore
from imaginize.guides.images import (
    ImageOptions,
    ImageStore,
    build_prompt,
    detect_extension,
    elements_in,
    fit,
    unit_id,
    unit_parts,
    wanted_units,
    with_chapter_units,
)
from imaginize.guides.merge import BookInfo, ChapterInfo, MergedElement, write_guides
from imaginize.guides.results import (
    image_record_path,
    load_results,
    result_path,
    write_image_record,
    write_result,
)
from imaginize.model import ChapterResult, ElementKind, ImageRecord, Scene
from imaginize.run import RunOptions, run_book
from tests.fake_openai import FakeOpenAI, error, image, make_jpeg, make_png
from tests.replies import answer
from tests.test_cli import SAMPLE, imaginize


def test_units_number_chapter_and_scene() -> None:
    assert unit_id(3, 2) == 3002
    assert unit_parts(12007) == (12, 7)


def test_extension_comes_from_the_bytes() -> None:
    assert detect_extension(make_png(2, 2)) == "png"
    assert detect_extension(make_jpeg(2, 2)) == "jpg"
    assert detect_extension(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    with pytest.raises(ProviderError):
        detect_extension(b"<html>oops</html>")


def test_fit_cuts_at_sentence_ends() -> None:
    text = "One two three. Four five six. Seven eight nine."
    assert fit(text, 100) == text
    assert fit(text, 30) == "One two three. Four five six."
    assert fit(text, 20) == "One two three."
    assert fit("a very long sentence without an end", 12) == "a very long"


WREN = MergedElement(
    "Wren Ashby", ElementKind.CHARACTER, "a girl with copper hair in a yellow oilskin", ["Wren"]
)
VALE = MergedElement("Captain Orrin Vale", ElementKind.CHARACTER, "a silver-bearded keeper")
KEY = MergedElement("brass key", ElementKind.ITEM, "a small key whose bow is a lighthouse")


def test_prompts_carry_the_look_of_what_is_in_the_scene() -> None:
    scene = Scene(
        quote="Wren held up the brass key.",
        description="Wren in the lamp room",
        characters=("Wren",),
        image_prompt="storybook painting of a girl holding a key in a lamp room",
    )
    assert [e.name for e in elements_in(scene, [WREN, VALE, KEY])] == ["Wren Ashby", "brass key"]
    prompt = build_prompt(scene, [WREN, VALE, KEY], "dall-e-3")
    assert prompt.startswith("storybook painting of a girl holding a key in a lamp room.")
    assert "copper hair in a yellow oilskin" in prompt and "bow is a lighthouse" in prompt
    assert "silver-bearded" not in prompt
    long = MergedElement("Wren", ElementKind.CHARACTER, "tall. " * 400, [])
    assert len(build_prompt(scene, [long], "dall-e-2")) <= 1000
    assert len(build_prompt(scene, [long], "dall-e-3")) <= 4000


@pytest.fixture
def book(tmp_path: Path) -> Path:
    copy = tmp_path / "sample.epub"
    shutil.copy(SAMPLE, copy)
    return copy


def image_requests(server: FakeOpenAI) -> list[dict]:
    return [r for r in server.requests if r["endpoint"] == "images"]


def run_images(book: Path, server: FakeOpenAI, *extra: str) -> tuple[int, str]:
    result = imaginize(
        book,
        "-o",
        book.parent / "out",
        "--base-url",
        server.url,
        "--images",
        "--image-size",
        "32x32",
        "--batch-delay",
        "0",
        "-j",
        "2",
        "--pages-per-image",
        "3",  # one scene a chapter of the sample
        *extra,
    )
    return result.returncode, result.stderr


@pytest.mark.slow
def test_images_end_to_end(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer, image_default=image("png"))
    fake_openai.enqueue(image("jpeg"), endpoint="images")
    code, stderr = run_images(book, fake_openai, "--chapters", "1-3")
    assert code == 0, stderr
    out = book.parent / "out"
    names = sorted(p.name for p in (out / "images").iterdir() if not p.name.startswith("."))
    files = [n for n in names if not n.endswith(".json")]
    assert len(files) == 3 and len(image_requests(fake_openai)) == 3  # one scene a chapter
    assert sum(f.endswith(".jpg") for f in files) == 1  # typed by the bytes, not assumed
    for name in files:
        data = (out / "images" / name).read_bytes()
        assert name.endswith("." + detect_extension(data))
    # Each image's record is beside it; the chapter's result file is the chapter worker's.
    record = json.loads((out / "images" / "chapter_001_scene_1.json").read_text())
    assert record["file"].startswith("images/chapter_001_scene_1.")
    assert record["model"] == "gpt-image-1" and record["size"] == "32x32"
    assert "images" not in json.loads((out / "chapters" / "001.json").read_text())
    sent = image_requests(fake_openai)[0]["body"]
    assert sent["prompt"] in {
        json.loads((out / "images" / f"chapter_00{n}_scene_1.json").read_text())["prompt"]
        for n in (1, 2, 3)
    }
    assert "response_format" not in sent  # gpt-image-1 refuses it
    assert "](images/chapter_001_scene_1." in (out / "Chapters.md").read_text()

    # Finished images are never made again...
    code, stderr = run_images(book, fake_openai, "--chapters", "1-3")
    assert code == 0, stderr
    assert len(image_requests(fake_openai)) == 3
    # ...unless forced, and then only the chapters asked for.
    code, stderr = run_images(book, fake_openai, "--chapters", "2", "--force")
    assert code == 0, stderr
    assert len(image_requests(fake_openai)) == 4


@pytest.mark.slow
def test_a_safety_rejection_fails_that_scene_only(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer, image_default=image("png"))
    fake_openai.enqueue(
        error(
            400, "Your request was rejected by our safety system.", code="content_policy_violation"
        ),
        endpoint="images",
    )
    code, stderr = run_images(book, fake_openai, "--chapters", "1-2", "-j", "1")
    assert code == 1
    assert "image of Chapter 1, scene 1 failed: rejected by the safety system" in stderr
    assert len(image_requests(fake_openai)) == 2  # not retried; the other scene went on
    assert len(list((book.parent / "out" / "images").glob("chapter_*.png"))) == 1
    status = imaginize("status", book, "-o", book.parent / "out")
    assert "images: 2 scenes: 0 pending, 0 in_progress, 1 completed, 1 failed" in status.stdout
    assert "Chapter 1, scene 1: rejected by the safety system" in status.stdout


@pytest.mark.slow
def test_offline_writes_prompts_only(book: Path) -> None:
    result = imaginize(book, "-o", book.parent / "out", "--images", "--chapters", "1")
    assert result.returncode == 0, result.stderr
    assert "makes no images" in result.stderr
    prompts = sorted((book.parent / "out" / "images").glob("*.txt"))
    assert [p.name for p in prompts] == ["chapter_001_scene_1.txt", "chapter_001_scene_2.txt"]
    assert prompts[0].read_text().strip()


@pytest.mark.slow
def test_images_follow_the_chapters_asked_for(fake_openai: FakeOpenAI, book: Path) -> None:
    fake_openai.script(responder=answer, image_default=image("png"))
    out = book.parent / "out"
    first = imaginize(
        book,
        "-o",
        out,
        "--base-url",
        fake_openai.url,
        "--batch-delay",
        "0",
        "-j",
        "2",
        "--pages-per-image",
        "3",
    )
    assert first.returncode == 0, first.stderr
    code, stderr = run_images(book, fake_openai, "--chapters", "1")
    assert code == 0, stderr
    assert len(image_requests(fake_openai)) == 1  # chapter 1's one scene, not all 8 chapters'
    drawn = sorted(p.name for p in (out / "images").glob("chapter_*"))
    assert drawn == ["chapter_001_scene_1.json", "chapter_001_scene_1.png"]
    listed = ImageStore(out).read()
    assert listed is not None and [e.number for e in listed.chapters] == [1001]
    # A unit of another chapter already listed (as by an earlier run) is not drawn either.
    ImageStore(out).add_units([(2001, "Chapter 2, scene 1")])
    code, stderr = run_images(book, fake_openai, "--chapters", "1")
    assert code == 0, stderr
    assert len(image_requests(fake_openai)) == 1
    listed = ImageStore(out).read()
    assert listed is not None and listed.entry(2001).status is mf.Status.PENDING


def test_wanted_units_are_the_listed_units_of_the_chapters() -> None:
    listed = mf.new_manifest("b", "0", "B", [(1001, ""), (1002, ""), (2001, ""), (3001, "")], 0)
    assert wanted_units(listed, [1, 3]) == (1001, 1002, 3001)
    assert wanted_units(listed, None) is None
    assert wanted_units(None, [1]) == ()


@pytest.mark.slow
def test_a_forced_chapter_with_fewer_scenes_drops_the_rest(
    fake_openai: FakeOpenAI, book: Path
) -> None:
    fake_openai.script(responder=answer, image_default=image("png"))
    out = book.parent / "out"
    code, stderr = run_images(book, fake_openai, "--chapters", "1", "--pages-per-image", "0.5")
    assert code == 0, stderr
    many = len(list((out / "images").glob("chapter_001_scene_*.png")))
    assert many > 1
    code, stderr = run_images(
        book, fake_openai, "--chapters", "1", "--force", "--pages-per-image", "10"
    )
    assert code == 0, stderr
    assert "no scene" not in stderr
    drawn = sorted(p.name for p in (out / "images").glob("chapter_*"))
    assert drawn == ["chapter_001_scene_1.json", "chapter_001_scene_1.png"]
    listed = ImageStore(out).read()
    assert listed is not None and [e.number for e in listed.chapters] == [1001]
    assert len(image_requests(fake_openai)) == many + 1


def scene(n: int) -> Scene:
    return Scene(quote=f"Quote {n}.", description=f"Scene {n}")


def result_with(chapter: int, scenes: int) -> ChapterResult:
    return ChapterResult(
        chapter, f"Chapter {chapter}", 100, "openai", "fake", tuple(map(scene, range(scenes))), ()
    )


def entry(number: int, status: mf.Status, token: int = 0) -> mf.Entry:
    owner = "host:1:w1" if status is mf.Status.IN_PROGRESS else None
    return mf.Entry(number, f"unit {number}", status, owner=owner, token=token)


def test_a_chapters_units_become_exactly_those_of_its_result() -> None:
    listed = mf.Manifest(
        "b",
        "0",
        "B",
        (
            entry(1001, mf.Status.COMPLETED),
            entry(1002, mf.Status.PENDING),
            entry(1003, mf.Status.IN_PROGRESS, token=4),
            entry(1004, mf.Status.FAILED),
            entry(2001, mf.Status.PENDING),
            entry(2005, mf.Status.FAILED),
        ),
        next_token=5,
    )
    units = {1: [(1001, "Chapter 1, scene 1"), (1002, "x")], 3: [(3001, "Chapter 3, scene 1")]}
    synced = with_chapter_units(listed, units, lambda numbers: {1001: 0})
    # 1003 is in progress: its worker's fenced calls find it (and drop it, its scene gone).
    assert [(e.number, e.status) for e in synced.chapters] == [
        (1001, mf.Status.COMPLETED),
        (1002, mf.Status.PENDING),
        (1003, mf.Status.IN_PROGRESS),
        (2001, mf.Status.PENDING),
        (2005, mf.Status.FAILED),  # chapter 2 is not being synced
        (3001, mf.Status.PENDING),
    ]


def test_an_in_progress_unit_of_a_dropped_scene_is_dropped_by_its_worker(tmp_path: Path) -> None:
    write_result(tmp_path, result_with(1, 3))
    images = ImageStore(tmp_path)
    store = images.manifest
    store.join(book_path="b", sha256="0", title="B", chapters=[(1001, ""), (1002, ""), (1003, "")])
    owner = mf.owner_id("w1")
    claims = [store.claim(owner, lease=60, max_attempts=3) for _ in range(3)]
    assert all(c is not None for c in claims)
    c1, c2, c3 = (c for c in claims if c is not None)
    # The chapter is redone with one scene: units 2 and 3 stay while their workers hold them.
    write_result(tmp_path, result_with(1, 1))
    before = result_path(tmp_path, 1).read_bytes()
    images.sync_units([1])
    listed = store.read()
    assert listed is not None and [e.number for e in listed.chapters] == [1001, 1002, 1003]
    # Unit 2's worker fails ("no scene 2 any more"): dropped, not failed for good.
    assert store.fail(c2.number, c2.token, "chapter 1 has no scene 2 any more")
    # Unit 3's worker publishes: dropped, its image discarded, nothing recorded.
    folder = tmp_path / "images"
    staged = folder / f".chapter_001_scene_3.{c3.token}.png"
    staged.write_bytes(make_png(2, 2))
    record = ImageRecord(3, "images/chapter_001_scene_3.png", "p", "m", "2x2")
    final = folder / "chapter_001_scene_3.png"
    lost = images.publish_image(c3.number, c3.token, staged, final, record)
    assert lost == "chapter 1 has no scene 3 any more"
    assert not staged.exists() and not final.exists()
    assert not image_record_path(tmp_path, 1, 3).exists()
    # Its other fenced calls find the claim lost instead of failing.
    assert not store.heartbeat(c3.number, c3.token) and not store.release(c3.number, c3.token)
    # Scene 1 is published and recorded as before.
    staged = folder / f".chapter_001_scene_1.{c1.token}.png"
    staged.write_bytes(make_png(2, 2))
    record = ImageRecord(1, "images/chapter_001_scene_1.png", "p", "m", "2x2")
    final = folder / "chapter_001_scene_1.png"
    assert images.publish_image(c1.number, c1.token, staged, final, record) is None
    assert final.exists() and read_image_record(tmp_path, 1, 1) == record
    # The record is beside the image: the chapter's result file has one writer.
    assert result_path(tmp_path, 1).read_bytes() == before
    assert load_results(tmp_path)[0][1].images == (record,)
    listed = store.read()
    assert listed is not None
    assert [(e.number, e.status) for e in listed.chapters] == [(1001, mf.Status.COMPLETED)]


@pytest.mark.slow
def test_images_left_to_make_leave_the_run_unfinished(book: Path) -> None:
    # Chapters 1 and 2 done (offline); then a run with --images for chapter 1 whose workers
    # stopped before drawing anything (as when they are killed): its images are unfinished.
    out = book.parent / "out"
    offline = RunOptions.of(
        out_dir=out, provider=resolve_provider(ProviderKind.OFFLINE), chapters="1-2"
    )
    assert run_book(book, replace(offline, in_process=True)).completed == 2
    online = resolve_provider(ProviderKind.OPENAI, base_url="http://127.0.0.1:9/v1")
    options = RunOptions.of(out_dir=out, provider=online, chapters="1", images=ImageOptions())
    job = run._prepare(book, out, options, ignore)
    listed = ImageStore(out).read()
    assert listed is not None and [e.number for e in listed.chapters] == [1001, 1002]
    ImageStore(out).add_units([(2001, "Chapter 2, scene 1")])  # not selected: not counted
    finished = run._finish(job)
    assert (finished.unfinished, finished.failures, finished.image_failures) == (0, {}, {})
    assert finished.unfinished_images == 2


def read_image_record(out: Path, chapter: int, scene: int) -> ImageRecord:
    return ImageRecord.from_json(json.loads(image_record_path(out, chapter, scene).read_text()))


def draw(out: Path, chapter: int, scene: int, prompt: str = "p") -> ImageRecord:
    """A scene's image and its record as a publish leaves them."""
    record = ImageRecord(scene, f"images/chapter_{chapter:03d}_scene_{scene}.png", prompt, "m", "s")
    (out / "images").mkdir(exist_ok=True)
    (out / record.file).write_bytes(make_png(2, 2))
    write_image_record(out, chapter, record)
    return record


def guides_of(out: Path) -> dict[str, bytes]:
    book = BookInfo("B", "A", (ChapterInfo(1, "Chapter 1"), ChapterInfo(2, "Chapter 2")))
    results, problems = load_results(out)
    assert problems == []
    return {p.name: p.read_bytes() for p in write_guides(out, book, results)}


def test_records_in_the_result_file_of_an_older_imaginize_still_merge(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    records = (
        ImageRecord(1, "images/chapter_001_scene_1.png", "one", "m", "s"),
        ImageRecord(2, "images/chapter_001_scene_2.png", "two", "m", "s"),
    )
    # An older imaginize wrote each image's record into the chapter's result file...
    write_result(old, replace(result_with(1, 2), images=records))
    write_result(old, result_with(2, 1))
    # ...this one beside the image.
    write_result(new, result_with(1, 2))
    write_result(new, result_with(2, 1))
    for out in (old, new):
        (out / "images").mkdir()
        for record in records:
            (out / record.file).write_bytes(make_png(2, 2))
    for record in records:
        write_image_record(new, 1, record)
    guides = guides_of(old)
    assert b"![Scene 2](images/chapter_001_scene_2.png)" in guides["Chapters.md"]
    assert b"- Images: 2" in guides["Contents.md"]
    assert guides_of(new) == guides
    # Scene 2 drawn again by this version: its record beside the image wins over the old one.
    again = draw(old, 1, 2, prompt="two again")
    assert load_results(old)[0][1].images == (records[0], again)


def test_a_record_whose_image_is_missing_is_not_merged(tmp_path: Path) -> None:
    write_result(tmp_path, result_with(1, 2))
    first = draw(tmp_path, 1, 1)
    draw(tmp_path, 1, 2)
    # A publish that died between writing the record and renaming the image into place.
    (tmp_path / "images" / "chapter_001_scene_2.png").unlink()
    (tmp_path / "images" / "chapter_001_scene_3.json").write_text("{not json")
    assert load_results(tmp_path)[0][1].images == (first,)


def test_forcing_an_image_removes_its_record_too(tmp_path: Path) -> None:
    write_result(tmp_path, result_with(1, 2))
    draw(tmp_path, 1, 1)
    draw(tmp_path, 1, 2)
    store = ImageStore(tmp_path).manifest
    units = [(1001, ""), (1002, "")]
    joined = store.join(book_path="b", sha256="0", title="B", chapters=units)
    assert [e.status for e in joined.chapters] == [mf.Status.COMPLETED] * 2  # drawn already
    store.join(book_path="b", sha256="0", title="B", chapters=units, force=[1002])
    left = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert left == ["chapter_001_scene_1.json", "chapter_001_scene_1.png"]
    assert [i.scene for i in load_results(tmp_path)[0][1].images] == [1]
