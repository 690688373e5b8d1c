"""ManifestStore, the manifest lock and atomic writes, on real files and real processes.

Multi-process tests start their children behind a barrier (a file the test creates), wait for
conditions by polling with a deadline, and kill every child they started in a `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imaginize.coordination import journal
from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import sweep_temp_files, write_atomic, write_json_atomic
from imaginize.coordination.locking import lock_holder
from imaginize.coordination.store import JOURNAL_NAME, LOCK_NAME, MANIFEST_NAME, ManifestStore
from imaginize.errors import ExitCode, LockTimeout, ManifestError
from imaginize.guides.results import Provenance, result_path
from imaginize.model import ChapterResult, Usage

SHA = "5f2c" * 16
CHAPTERS = [(1, "One"), (2, "Two"), (3, "Three"), (4, "Four")]
LEASE = 600.0


# --- helpers ----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)


@contextmanager
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started into the yielded list are killed and reaped however the test ends."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
        for proc in started:
            proc.wait(timeout=10)


def spawn(
    procs: list[subprocess.Popen[bytes]], code: str, *args: object
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)])
    procs.append(proc)
    return proc


def joined(
    out: Path,
    chapters: list[tuple[int, str]] = CHAPTERS,
    *,
    force: list[int] | None = None,
    retry_failed: list[int] | None = None,
) -> ManifestStore:
    store = ManifestStore(out, lock_timeout=10)
    store.join(
        book_path="/books/b.epub",
        sha256=SHA,
        title="B",
        chapters=chapters,
        force=force or (),
        retry_failed=retry_failed,
    )
    return store


def result_json(
    number: int, prompt: int = 5, completion: int = 7, *, book: str = SHA, chapter: int = 0
) -> dict[str, object]:
    """A result file's content, stamped with `book`'s hash ("": an older imaginize's file),
    naming `chapter` (by default `number`)."""
    return ChapterResult(
        chapter=chapter or number,
        title=f"C{number}",
        words=10,
        provider="offline",
        model="none",
        scenes=(),
        elements=(),
        usage=Usage(prompt, completion),
        book_sha256=book,
    ).to_json()


def stage(out: Path, number: int, token: int) -> Path:
    staged = out / "chapters" / f".{number:03d}.{token}.json"
    write_json_atomic(staged, result_json(number))
    return staged


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def manifest_bytes(out: Path) -> bytes:
    return (out / MANIFEST_NAME).read_bytes()


def files_bytes(out: Path) -> tuple[bytes, bytes]:
    """The manifest's snapshot and journal."""
    return manifest_bytes(out), (out / JOURNAL_NAME).read_bytes()


# Takes the manifest lock, says so, and holds it until told to release (or killed).
HOLDER = """
import sys, time
from pathlib import Path
from imaginize.coordination.locking import manifest_lock
lock_path, ready, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
lock = manifest_lock(lock_path)
lock.acquire(timeout=30)
ready.write_text("held")
while not release.exists():
    time.sleep(0.005)
lock.release()
Path(str(ready) + ".released").write_text("")
"""


def hold_lock(
    procs: list[subprocess.Popen[bytes]], out: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """A live process holding the lock; touch the returned path to make it release."""
    ready, release = out / "holder.ready", out / "holder.release"
    proc = spawn(procs, HOLDER, out / LOCK_NAME, ready, release)
    wait_for(ready.exists, what="the holder to take the lock")
    return proc, release


# --- transact and atomic writes ---------------------------------------------------------------


@pytest.mark.slow
def test_transact_writes_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = joined(tmp_path)
    for i in range(20):
        got = store.claim(f"h:1:w{i}", lease=LEASE, max_attempts=3)
        if got is not None:
            assert store.release(got.number, got.token)
        assert temp_files(tmp_path) == []
        # What a reader that never read before makes of the files: the same manifest.
        assert ManifestStore(tmp_path).read() == store.read()
    assert store.read() is not None and store.read().next_token == 21  # type: ignore[union-attr]
    assert not (tmp_path / LOCK_NAME).exists()


def test_transact_writes_nothing_when_nothing_changed(tmp_path: Path) -> None:
    store = joined(tmp_path)
    before = manifest_bytes(tmp_path)
    assert store.heartbeat(1, 99) is False
    assert manifest_bytes(tmp_path) == before


def test_failed_write_leaves_the_old_manifest_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = joined(tmp_path)
    before = files_bytes(tmp_path)
    version = store.read()

    def broken_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    # A journal line whose fsync fails is taken back: nobody reads it from the page cache.
    monkeypatch.setattr("imaginize.coordination.journal._sync", broken_sync)
    with pytest.raises(OSError, match="Input/output"):
        store.claim("h:1:w", lease=LEASE, max_attempts=3)
    monkeypatch.undo()
    assert files_bytes(tmp_path) == before
    assert store.read() == version == ManifestStore(tmp_path).read()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    # A compaction whose snapshot cannot be written changes nothing either.
    monkeypatch.setattr("imaginize.coordination.atomic.os.replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.compact()
    monkeypatch.undo()
    assert files_bytes(tmp_path) == before
    assert temp_files(tmp_path) == []
    # The lock was released despite the errors.
    assert not (tmp_path / LOCK_NAME).exists()
    assert store.claim("h:1:w", lease=LEASE, max_attempts=3) is not None
    assert ManifestStore(tmp_path).read() == store.read()


def test_a_read_decodes_only_what_changed_since_the_stores_last_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = joined(tmp_path)
    assert store.claim("h:1:w", lease=LEASE, max_attempts=3) is not None
    decoded: list[str] = []
    loads = json.loads

    def counting(text: bytes | str) -> object:
        head = bytes(text[:7]) if isinstance(text, bytes) else text[:7].encode()
        decoded.append({b'{"forma': "snapshot", b'{"seq":': "line"}.get(head, "header"))
        return loads(text)

    monkeypatch.setattr("imaginize.coordination.journal.json.loads", counting)
    mine = store.read()
    # Its own write is read back from the journal like anyone's: one line, not the snapshot.
    assert [d for d in decoded if d != "header"] == ["line"]
    decoded.clear()
    other = ManifestStore(tmp_path)
    assert other.read() == mine
    assert [d for d in decoded if d != "header"] == ["snapshot", "line"]
    # Another store's transaction: one line decoded, not the snapshot.
    decoded.clear()
    assert other.claim("h:2:w", lease=LEASE, max_attempts=3) is not None
    theirs = store.read()
    assert theirs is not None and theirs.entry(2).owner == "h:2:w"
    assert [d for d in decoded if d != "header"] == ["line"]
    # A compaction: the new snapshot, and no line.
    decoded.clear()
    store.compact()
    assert other.read() == theirs
    assert [d for d in decoded if d != "header"] == ["snapshot"]
    # A complete line that breaks the format is refused, by every reader.
    assert other.heartbeat(1, theirs.entry(1).token)
    journal = tmp_path / JOURNAL_NAME
    raw = journal.read_bytes()
    journal.write_bytes(raw.replace(b'"owner": "h:1:w"', b'"owner": 17', 1))
    with pytest.raises(ManifestError, match=r"invalid journal \(line 2: put\[0\]: owner"):
        store.read()
    with pytest.raises(ManifestError, match="invalid journal"):
        ManifestStore(tmp_path).read()


def test_an_exception_in_the_change_writes_nothing_and_releases_the_lock(tmp_path: Path) -> None:
    store = joined(tmp_path)
    before = manifest_bytes(tmp_path)

    def change(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        store.transact(change)
    assert manifest_bytes(tmp_path) == before
    assert not (tmp_path / LOCK_NAME).exists()


def test_transact_without_manifest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing"):
        ManifestStore(tmp_path).transact(lambda m: (m, None))


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text('{"format": 1, "book"', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"unreadable manifest"):
        ManifestStore(tmp_path).read()
    (tmp_path / MANIFEST_NAME).write_text('{"format": 7}', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"invalid manifest"):
        ManifestStore(tmp_path).read()


DELETE = object()


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A change to a manifest's JSON: `path` like "chapters.0.heartbeatAt" or "book"."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


# (what is wrong, the change, what the message must name)
BAD_FIELDS: list[tuple[str, Callable[[dict], None], str]] = [
    ("a time as text", _set("chapters.0.heartbeatAt", "x"), "chapters[0]: heartbeatAt"),
    ("a time as a bool", _set("chapters.0.claimedAt", True), "chapters[0]: claimedAt"),
    ("a time not finite", _set("chapters.1.completedAt", float("nan")), "completedAt"),
    ("a time as an array", _set("chapters.1.retryAt", []), "chapters[1]: retryAt"),
    ("an unknown status", _set("chapters.0.status", "done"), "chapters[0]: status"),
    ("a status as a number", _set("chapters.0.status", 1), "chapters[0]: status"),
    ("a missing status", _set("chapters.0.status", DELETE), "chapters[0]: status"),
    ("a number as text", _set("chapters.0.number", "1"), "chapters[0]: number"),
    ("a number as a float", _set("chapters.0.number", 1.0), "chapters[0]: number"),
    ("a number as a bool", _set("chapters.0.number", True), "chapters[0]: number"),
    ("a negative number", _set("chapters.0.number", -1), "chapters[0]: number"),
    ("a missing number", _set("chapters.0.number", DELETE), "chapters[0]: number"),
    ("a negative token", _set("chapters.2.token", -3), "chapters[2]: token"),
    ("a null token", _set("chapters.2.token", None), "chapters[2]: token"),
    ("attempts as a float", _set("chapters.2.attempts", 1.5), "chapters[2]: attempts"),
    ("tokens as text", _set("chapters.3.tokens", "9"), "chapters[3]: tokens"),
    ("a title as null", _set("chapters.0.title", None), "chapters[0]: title"),
    ("an owner as a number", _set("chapters.0.owner", 5), "chapters[0]: owner"),
    ("an error as an object", _set("chapters.0.error", {}), "chapters[0]: error"),
    ("retryable as text", _set("chapters.0.retryable", "yes"), "chapters[0]: retryable"),
    ("retryable as null", _set("chapters.0.retryable", None), "chapters[0]: retryable"),
    ("an entry not an object", _set("chapters.1", "two"), "chapters[1]"),
    ("chapters not a list", _set("chapters", {"1": {}}), "chapters"),
    ("a chapter number twice", _set("chapters.1.number", 1), "number 1 appears twice"),
    ("nextToken as text", _set("nextToken", "2"), "nextToken"),
    ("nextToken zero", _set("nextToken", 0), "nextToken"),
    ("nextToken not above a token", _set("chapters.0.token", 99), "nextToken"),
    ("createdAt null", _set("createdAt", None), "createdAt"),
    ("updatedAt as text", _set("updatedAt", "now"), "updatedAt"),
    ("book not an object", _set("book", "b.epub"), "book"),
    ("book.path as a number", _set("book.path", 5), "book.path"),
    ("book.sha256 missing", _set("book.sha256", DELETE), "book.sha256"),
    ("book.title as a list", _set("book.title", ["B"]), "book.title"),
    ("format as text", _set("format", "1"), "format"),
    ("format as a bool", _set("format", True), "format"),
]


@pytest.mark.parametrize(
    ("change", "field"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
@pytest.mark.slow
def test_a_field_of_the_wrong_kind_is_an_invalid_manifest(
    tmp_path: Path, change: Callable[[dict], None], field: str
) -> None:
    store = joined(tmp_path)
    claimed = store.claim("h:1:w1", lease=LEASE, max_attempts=3)
    assert claimed is not None  # so chapter 1 has a token and an owner
    store.compact()  # the whole manifest in the snapshot, to be damaged
    path = tmp_path / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    # Replaced, as an editor saves a file: a store notices a new snapshot by its stat.
    write_json_atomic(path, data)
    with pytest.raises(ManifestError) as caught:
        store.read()
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid manifest (")
    assert field in message
    # The writers read through the same path, so none of them acts on it either.
    with pytest.raises(ManifestError):
        store.heartbeat(1, claimed.token)


def test_a_manifest_that_is_not_an_object_is_invalid(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"invalid manifest \(must be an object"):
        ManifestStore(tmp_path).read()


READER = """
import json, sys
from pathlib import Path
from imaginize.coordination.store import ManifestStore
folder, ready, stop, out = map(Path, sys.argv[1:5])
reads = bad = 0
versions = set()
kept = ManifestStore(folder)  # reads on from where it stopped; a new one reads it all
ready.write_text("")
while not stop.exists():
    for store in (kept, ManifestStore(folder)):
        try:
            m = store.read()
            # The writer claims one chapter and gives it back: never two in progress.
            if sum(e.status.value == "in_progress" for e in m.chapters) > 1:
                raise AssertionError("two chapters in progress")
            versions.add(m.next_token)
        except Exception as exc:
            bad += 1
            print(repr(exc), file=sys.stderr)
        reads += 1
# Whole or not at all: the test reads it as soon as it exists.
report = {"reads": reads, "bad": bad, "versions": len(versions)}
out.with_suffix(".tmp").write_text(json.dumps(report))
out.with_suffix(".tmp").rename(out)
"""


@pytest.mark.slow
def test_readers_never_see_a_torn_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A big manifest, so a non-atomic snapshot would be visible half-done; and a compaction
    # whenever the journal outgrows it, so readers meet compactions as well as appends.
    monkeypatch.setattr("imaginize.coordination.journal.MIN_JOURNAL_BYTES", 0)
    chapters = [(n, f"Chapter {n} " + "x" * 200) for n in range(1, 41)]
    store = joined(tmp_path, chapters)
    stop = tmp_path / "stop"
    thread_seen = {"reads": 0, "bad": 0, "versions": set()}

    def thread_reader() -> None:
        kept = ManifestStore(tmp_path)
        while not stop.exists():
            for reader in (kept, ManifestStore(tmp_path)):
                try:
                    m = reader.read()
                    assert m is not None
                    assert sum(e.status is mf.Status.IN_PROGRESS for e in m.chapters) <= 1
                    thread_seen["versions"].add(m.next_token)  # type: ignore[attr-defined]
                except Exception:
                    thread_seen["bad"] += 1  # type: ignore[operator]
                thread_seen["reads"] += 1  # type: ignore[operator]
            time.sleep(0.0005)  # let the writer have the GIL

    with children() as procs:
        ready, out = tmp_path / "reader.ready", tmp_path / "reader.out"
        spawn(procs, READER, tmp_path, ready, stop, out)
        wait_for(ready.exists, what="the reader")
        reader = threading.Thread(target=thread_reader)
        reader.start()
        snapshots = set()
        try:
            for i in range(80):
                got = store.claim(f"h:1:w{i}", lease=LEASE, max_attempts=3)
                assert got is not None
                store.release(got.number, got.token)
                snapshots.add(os.stat(tmp_path / MANIFEST_NAME).st_ino)
        finally:
            stop.touch()
            reader.join()
        wait_for(out.exists, what="the reader's report")
        seen = json.loads(out.read_text())
    assert seen["bad"] == 0 and thread_seen["bad"] == 0
    assert len(snapshots) > 2  # compactions happened in between
    # The readers really ran alongside the writer.
    assert seen["reads"] > 0 and seen["versions"] > 1
    assert len(thread_seen["versions"]) > 1  # type: ignore[arg-type]


# --- the journal: appends, torn lines, compaction ------------------------------------------


def journal_lines(out: Path) -> list[dict[str, Any]]:
    """The journal's lines after its header."""
    return [json.loads(line) for line in (out / JOURNAL_NAME).read_bytes().splitlines()[1:]]


@pytest.mark.slow
def test_a_transaction_appends_one_line_and_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    store = joined(tmp_path, [(n, f"Chapter {n}") for n in range(1, 201)])
    snapshot = manifest_bytes(tmp_path)
    got = store.claim("h:1:w", lease=LEASE, max_attempts=3)
    assert got is not None
    assert store.publish(got.number, got.token, stage(tmp_path, 1, got.token), 12)
    assert manifest_bytes(tmp_path) == snapshot
    lines = journal_lines(tmp_path)
    # One line per transaction, numbered, holding only the entry it changed.
    assert [line["seq"] for line in lines] == [1, 2]
    assert [[e["number"] for e in line["put"]] for line in lines] == [[1], [1]]
    assert len((tmp_path / JOURNAL_NAME).read_bytes()) < 1500  # not the 200 chapters


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(tmp_path: Path) -> None:
    store = joined(tmp_path)
    got = store.claim("h:1:w", lease=LEASE, max_attempts=3)
    assert got is not None
    version = store.read()
    journal = tmp_path / JOURNAL_NAME
    whole = journal.read_bytes()
    # A writer killed mid-append: part of a line, without its newline; or power lost after
    # the size grew but before the bytes (zeros); or garbage that does end in a newline.
    for torn in (b'{"seq": 2, "updatedAt": 17', b"\0" * 300, b'{"seq": 2, "upd\0\0}\n'):
        journal.write_bytes(whole + torn)
        assert ManifestStore(tmp_path).read() == version
        assert store.read() == version
    assert store.heartbeat(got.number, got.token)  # the next writer cuts it off
    assert not journal.read_bytes().startswith(whole + b'{"seq": 2, "upd\0')
    assert [line["seq"] for line in journal_lines(tmp_path)] == [1, 2]
    assert ManifestStore(tmp_path).read() == store.read()
    # A damaged line with complete lines after it is no torn tail: refused.
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1][:20]
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(ManifestError, match="damaged line"):
        ManifestStore(tmp_path).read()


def test_a_writer_whose_journal_changed_under_its_lock_writes_nothing(tmp_path: Path) -> None:
    """A holder frozen past the lock lifetime, whose lock was broken and whose journal others
    appended to meanwhile: its write would garble their lines, so it refuses."""
    store = joined(tmp_path)
    journal_file = tmp_path / JOURNAL_NAME

    def claimed_while_frozen(m: mf.Manifest) -> tuple[mf.Manifest, None]:
        other = ManifestStore(tmp_path)._files  # another process, past the broken lock
        base = other.read()
        assert base is not None
        other.write(mf.claim(base, "h:2:w", 1.0)[0], base)
        return mf.claim(m, "h:1:w", 1.0)[0], None

    with pytest.raises(ManifestError, match="changed by another process while this one held"):
        store.transact(claimed_while_frozen)
    after = journal_lines(tmp_path)
    assert [line["put"][0]["owner"] for line in after] == ["h:2:w"]
    assert store.read() == ManifestStore(tmp_path).read()
    assert journal_file.exists()


@pytest.mark.slow
def test_compaction_replaces_the_snapshot_and_starts_a_new_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imaginize.coordination.journal.MIN_JOURNAL_BYTES", 0)
    store = joined(tmp_path)
    reader = ManifestStore(tmp_path)
    generations = []
    for i in range(40):
        got = store.claim(f"h:1:w{i}", lease=LEASE, max_attempts=3)
        assert got is not None and store.release(got.number, got.token)
        generations.append(json.loads(manifest_bytes(tmp_path))["generation"])
        assert reader.read() == store.read() == ManifestStore(tmp_path).read()
        # The journal never grows past the snapshot (the threshold here).
        assert (tmp_path / JOURNAL_NAME).stat().st_size <= len(manifest_bytes(tmp_path))
    assert len(set(generations)) > 3
    data = json.loads(manifest_bytes(tmp_path))
    header = json.loads((tmp_path / JOURNAL_NAME).read_bytes().splitlines()[0])
    assert data["format"] == 2 and header == {"journal": 1, "generation": data["generation"]}


def test_a_compaction_killed_before_the_new_journal_applies_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = joined(tmp_path)
    for i in range(3):
        got = store.claim(f"h:1:w{i}", lease=LEASE, max_attempts=3)
        assert got is not None and store.release(got.number, got.token)
    version = store.read()
    old_journal = (tmp_path / JOURNAL_NAME).read_bytes()
    written: list[Path] = []

    def killed_after_the_snapshot(path: Path, data: bytes) -> None:
        if written:
            raise KeyboardInterrupt  # as kill -9 right after the snapshot's rename
        written.append(path)
        write_atomic(path, data)

    monkeypatch.setattr("imaginize.coordination.journal.write_atomic", killed_after_the_snapshot)
    with pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    # The new snapshot holds the old journal's lines and names it as superseded.
    assert (tmp_path / JOURNAL_NAME).read_bytes() == old_journal
    old_generation = json.loads(old_journal.splitlines()[0])["generation"]
    assert json.loads(manifest_bytes(tmp_path))["supersedes"] == old_generation
    # Its lines are not applied again: release gave attempts back; twice would go below.
    assert ManifestStore(tmp_path).read() == version == store.read()
    # The next writer compacts and goes on.
    got = ManifestStore(tmp_path).claim("h:2:w", lease=LEASE, max_attempts=3)
    assert got is not None and got.token == 4
    header = json.loads((tmp_path / JOURNAL_NAME).read_bytes().splitlines()[0])
    assert header["generation"] == json.loads(manifest_bytes(tmp_path))["generation"]
    assert store.read() == ManifestStore(tmp_path).read()


def test_a_format_1_manifest_is_read_and_upgraded_by_its_first_write(tmp_path: Path) -> None:
    m = mf.new_manifest("/books/b.epub", SHA, "B", CHAPTERS, 1.0)
    data = m.to_json()
    data["format"] = 1
    write_json_atomic(tmp_path / MANIFEST_NAME, data)
    store = ManifestStore(tmp_path)
    assert store.read() == m
    assert store.claim("h:1:w", lease=LEASE, max_attempts=3) is not None
    assert json.loads(manifest_bytes(tmp_path))["format"] == 2
    assert (tmp_path / JOURNAL_NAME).exists()
    assert ManifestStore(tmp_path).read() == store.read()


def test_a_journal_of_another_manifest_is_refused(tmp_path: Path) -> None:
    store = joined(tmp_path)
    other = tmp_path / "other"
    joined(other)
    (other / JOURNAL_NAME).replace(tmp_path / JOURNAL_NAME)
    with pytest.raises(ManifestError, match=r"journal of generation \w+, but the manifest"):
        ManifestStore(tmp_path).read()
    with pytest.raises(ManifestError, match="journal"):
        store.claim("h:1:w", lease=LEASE, max_attempts=3)


def test_a_manifest_removed_with_its_journal_left_starts_afresh(tmp_path: Path) -> None:
    store = joined(tmp_path)
    assert store.claim("h:1:w", lease=LEASE, max_attempts=3) is not None
    os.unlink(tmp_path / MANIFEST_NAME)
    assert ManifestStore(tmp_path).read() is None
    fresh = joined(tmp_path)
    m = fresh.read()
    assert m is not None and m.next_token == 1 and m.entry(1).status is mf.Status.PENDING
    assert journal_lines(tmp_path) == []
    assert store.read() == m


WRITER = """
import sys
from pathlib import Path
import imaginize.coordination.journal
from imaginize.coordination.atomic import write_atomic
from imaginize.coordination.store import ManifestStore
imaginize.coordination.journal.MIN_JOURNAL_BYTES = 0  # a compaction every few transactions
store = ManifestStore(Path(sys.argv[1]))
done = Path(sys.argv[2])
i = 0
while True:
    got = store.claim(f"h:1:w{i}", lease=600.0, max_attempts=3)
    store.release(got.number, got.token)
    i += 1
    write_atomic(done, str(i))  # never half-written when the kill lands
"""


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_a_whole_manifest(tmp_path: Path) -> None:
    """kill -9 lands mid-append, mid-compaction, anywhere: the next reader and writer go on
    from the last complete transaction."""
    store = joined(tmp_path, [(n, f"Chapter {n} " + "x" * 100) for n in range(1, 31)])
    done = tmp_path / "done"
    rng = __import__("random").Random(9)
    for kills in range(1, 13):
        with children() as procs:
            proc = spawn(procs, WRITER, tmp_path, done)
            time.sleep(rng.uniform(0.05, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        m = ManifestStore(tmp_path).read()
        # Killed between a claim and its release, each writer leaves at most one in progress.
        assert m is not None
        assert sum(e.status is mf.Status.IN_PROGRESS for e in m.chapters) <= kills
        # Every claim acknowledged before the kill is in it (each took a token).
        acknowledged = int(done.read_text()) if done.exists() else 0
        assert m.next_token > acknowledged
        (tmp_path / LOCK_NAME).unlink(missing_ok=True)  # the killed writer's, if it held it
        got = store.claim("h:2:w", lease=LEASE, max_attempts=3)
        assert got is not None and store.release(got.number, got.token)
        assert ManifestStore(tmp_path).read() == store.read()
        done.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_store_shared_by_threads_still_excludes(tmp_path: Path) -> None:
    store = joined(tmp_path)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(30):
            with store.locked():
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1


@pytest.mark.slow
def test_a_store_shared_by_threads_loses_no_update(tmp_path: Path) -> None:
    store = joined(tmp_path)

    def work() -> None:
        for _ in range(25):
            got = store.claim("h:1:w", lease=LEASE, max_attempts=3)
            assert got is not None
            assert store.release(got.number, got.token)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = store.read()
    assert m is not None and m.next_token == 101


# --- join -------------------------------------------------------------------------------------


def test_join_creates_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder"
    store = ManifestStore(out, clock=lambda: 1234.5)
    m = store.join(book_path="/books/b.epub", sha256=SHA, title="B", chapters=CHAPTERS)
    assert (out / "chapters").is_dir()
    assert store.read() == m
    assert [(e.number, e.title, e.status) for e in m.chapters] == [
        (n, t, mf.Status.PENDING) for n, t in CHAPTERS
    ]
    assert (m.next_token, m.book_sha256, m.created_at, m.updated_at) == (1, SHA, 1234.5, 1234.5)


def busy(out: Path) -> ManifestStore:
    """1 completed (with its file), 2 failed (retryable), 3 in progress, 4 pending."""
    store = joined(out)
    c1 = store.claim("h:1:w1", lease=LEASE, max_attempts=3)
    c2 = store.claim("h:1:w2", lease=LEASE, max_attempts=3)
    c3 = store.claim("h:1:w3", lease=LEASE, max_attempts=3)
    assert c1 and c2 and c3
    assert store.publish(1, c1.token, stage(out, 1, c1.token), 12)
    assert store.fail(2, c2.token, "HTTP 503", retryable=True, retry_at=time.time() + 999)
    return store


def test_rejoining_changes_nothing(tmp_path: Path) -> None:
    store = busy(tmp_path)
    before_bytes = files_bytes(tmp_path)
    before = store.read()
    again = joined(tmp_path)
    assert again.read() == before
    assert files_bytes(tmp_path) == before_bytes  # not even rewritten


def test_joining_with_another_book_is_refused(tmp_path: Path) -> None:
    busy(tmp_path)
    before = manifest_bytes(tmp_path)
    with pytest.raises(ManifestError) as caught:
        ManifestStore(tmp_path).join(
            book_path="/books/other.epub", sha256="0" * 64, title="X", chapters=CHAPTERS
        )
    message = str(caught.value)
    assert str(tmp_path / MANIFEST_NAME) in message
    assert "different book" in message and "/books/b.epub" in message
    assert caught.value.exit_code is ExitCode.BAD_INPUT
    assert manifest_bytes(tmp_path) == before
    assert not (tmp_path / LOCK_NAME).exists()


def test_join_reconciles_with_result_files(tmp_path: Path) -> None:
    store = busy(tmp_path)
    os.unlink(result_path(tmp_path, 1))  # completed, file gone
    write_json_atomic(result_path(tmp_path, 4), result_json(4, 100, 23))  # pending, file there
    m = joined(tmp_path, [*CHAPTERS, (5, "Five")]).read()
    assert m is not None
    assert m.entry(1).status is mf.Status.PENDING
    assert (m.entry(4).status, m.entry(4).tokens) == (mf.Status.COMPLETED, 123)
    assert m.entry(5) == mf.Entry(5, "Five")
    assert m.entry(2).status is mf.Status.FAILED and m.entry(3).status is mf.Status.IN_PROGRESS
    assert store.read() == m


def test_a_corrupt_result_file_does_not_count_as_finished(tmp_path: Path) -> None:
    joined(tmp_path)
    result_path(tmp_path, 2).write_text("{not json", encoding="utf-8")
    m = joined(tmp_path).read()
    assert m is not None and m.entry(2).status is mf.Status.PENDING


OTHER = "a1b2" * 16  # another book's hash


def joined_warning(
    out: Path, chapters: list[tuple[int, str]] = CHAPTERS
) -> tuple[mf.Manifest, list[str]]:
    """Join as a run does; the manifest and the warnings join gave."""
    warnings: list[str] = []
    m = ManifestStore(out, lock_timeout=10).join(
        book_path="/books/b.epub", sha256=SHA, title="B", chapters=chapters, warn=warnings.append
    )
    return m, warnings


def test_without_a_manifest_only_this_books_results_are_adopted(tmp_path: Path) -> None:
    """The manifest deleted, another book's results left in the folder: never adopted."""
    out = tmp_path
    (out / "chapters").mkdir()
    write_json_atomic(result_path(out, 1), result_json(1))  # this book's
    write_json_atomic(result_path(out, 2), result_json(2, book=OTHER))  # another book's
    m, warnings = joined_warning(out)
    assert m.entry(1).status is mf.Status.COMPLETED
    assert m.entry(2).status is mf.Status.PENDING
    assert warnings == [
        f"{result_path(out, 2)} belongs to another book (sha256 {OTHER[:12]}...); "
        "chapter 2 will be analysed again"
    ]


def test_a_result_naming_another_chapter_is_not_adopted(tmp_path: Path) -> None:
    """chapters/003.json holding chapter 1's analysis (a copy, a rename) is not chapter 3's."""
    (tmp_path / "chapters").mkdir()
    write_json_atomic(result_path(tmp_path, 3), result_json(3, chapter=1))
    m, warnings = joined_warning(tmp_path)
    assert m.entry(3).status is mf.Status.PENDING
    assert warnings == [
        f"{result_path(tmp_path, 3)} holds chapter 1, not chapter 3; "
        "chapter 3 will be analysed again"
    ]
    # Nor does it keep a chapter the manifest records as completed.
    write_json_atomic(result_path(tmp_path, 3), result_json(3))
    assert joined(tmp_path).read().entry(3).status is mf.Status.COMPLETED  # type: ignore[union-attr]
    write_json_atomic(result_path(tmp_path, 3), result_json(3, chapter=1))
    m, warnings = joined_warning(tmp_path)
    assert m.entry(3).status is mf.Status.PENDING and len(warnings) == 1


def test_another_books_result_under_this_books_manifest_reopens_its_chapter(
    tmp_path: Path,
) -> None:
    busy(tmp_path)  # chapter 1 completed
    write_json_atomic(result_path(tmp_path, 1), result_json(1, book=OTHER))
    m, warnings = joined_warning(tmp_path)
    assert m.entry(1).status is mf.Status.PENDING
    assert len(warnings) == 1 and "another book" in warnings[0]


def test_an_older_result_without_a_hash_counts_only_where_the_manifest_says_done(
    tmp_path: Path,
) -> None:
    busy(tmp_path)  # chapter 1 completed; 4 pending
    write_json_atomic(result_path(tmp_path, 1), result_json(1, book=""))
    write_json_atomic(result_path(tmp_path, 4), result_json(4, book=""))
    m, warnings = joined_warning(tmp_path)
    assert m.entry(1).status is mf.Status.COMPLETED  # the same book's manifest vouches for it
    assert m.entry(4).status is mf.Status.PENDING  # nothing does
    assert [w.split(" ")[0] for w in warnings] == [str(result_path(tmp_path, 4))]
    assert "older imaginize" in warnings[0]
    # Without a manifest, nothing vouches for any of them.
    os.unlink(tmp_path / MANIFEST_NAME)
    m, warnings = joined_warning(tmp_path)
    assert [e.status for e in m.chapters] == [mf.Status.PENDING] * 4
    assert len(warnings) == 2


def test_a_stale_claim_over_another_books_result_is_worked_on(tmp_path: Path) -> None:
    """The takeover of a dead claim adopts a result found on disk only if it is this book's."""
    now = [1000.0]
    store = ManifestStore(tmp_path, clock=lambda: now[0], lock_timeout=10)
    store.join(book_path="/b", sha256=SHA, title="B", chapters=CHAPTERS[:2])
    dead = store.claim("elsewhere:1:w", lease=LEASE, max_attempts=3)
    assert dead is not None and dead.number == 1
    write_json_atomic(result_path(tmp_path, 1), result_json(1, book=OTHER))
    now[0] += LEASE + 1
    got = store.claim("elsewhere:2:w", lease=LEASE, max_attempts=3)
    assert got is not None and got.number == 1 and got.reason.startswith("no heartbeat")
    assert store.read().entry(1).status is mf.Status.IN_PROGRESS  # type: ignore[union-attr]


def test_join_keeps_completed_chapters_it_was_not_told_about(tmp_path: Path) -> None:
    busy(tmp_path)
    # A later join lists fewer chapters (say a changed splitter): chapter 1's file still exists.
    m = joined(tmp_path, [(2, "Two"), (3, "Three")]).read()
    assert m is not None and m.entry(1).status is mf.Status.COMPLETED


def test_force_reopens_finished_chapters_and_drops_their_results(tmp_path: Path) -> None:
    busy(tmp_path)
    m = joined(tmp_path, force=[1, 2, 3]).read()
    assert m is not None
    assert m.entry(1).status is mf.Status.PENDING and m.entry(1).attempts == 0
    assert not result_path(tmp_path, 1).exists()
    assert m.entry(2).status is mf.Status.PENDING
    assert m.entry(3).status is mf.Status.IN_PROGRESS  # never touched while in progress


def test_retry_failed_reopens_failed_only(tmp_path: Path) -> None:
    store = busy(tmp_path)
    before = store.read()
    assert before is not None
    m = joined(tmp_path, retry_failed=None).read()
    assert m == before
    m = joined(tmp_path, retry_failed=[1, 2, 3, 4]).read()
    assert m is not None
    assert (m.entry(2).status, m.entry(2).attempts) == (mf.Status.PENDING, 0)
    for n in (1, 3, 4):
        assert m.entry(n) == before.entry(n)
    assert result_path(tmp_path, 1).exists()


def test_join_sweeps_only_old_temp_files(tmp_path: Path) -> None:
    joined(tmp_path)
    old = tmp_path / ".imaginize.manifest.json.abc123.tmp"
    old_result = tmp_path / "chapters" / ".001.json.def456.tmp"
    fresh = tmp_path / ".imaginize.manifest.json.ghi789.tmp"
    for p in (old, old_result, fresh):
        p.write_text("half", encoding="utf-8")
    for p in (old, old_result):
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    joined(tmp_path)
    assert not old.exists() and not old_result.exists()
    assert fresh.exists()


# --- publish and claim ------------------------------------------------------------------------


def test_publish_with_the_current_token(tmp_path: Path) -> None:
    store = joined(tmp_path)
    got = store.claim("h:1:w", lease=LEASE, max_attempts=3)
    assert got is not None
    staged = stage(tmp_path, got.number, got.token)
    assert store.publish(got.number, got.token, staged, 12)
    assert not staged.exists()
    final = result_path(tmp_path, got.number)
    assert json.loads(final.read_text(encoding="utf-8")) == result_json(got.number)
    e = store.read().entry(got.number)  # type: ignore[union-attr]
    assert (e.status, e.owner, e.tokens) == (mf.Status.COMPLETED, None, 12)
    assert e.completed_at is not None


def test_publish_with_a_stale_token_discards_the_staged_file(tmp_path: Path) -> None:
    now = [1000.0]
    store = ManifestStore(tmp_path, clock=lambda: now[0], lock_timeout=10)
    store.join(book_path="/b", sha256=SHA, title="B", chapters=CHAPTERS[:1])
    old = store.claim("elsewhere:1:old", lease=LEASE, max_attempts=3)
    assert old is not None
    now[0] += LEASE + 1
    new = store.claim("elsewhere:2:new", lease=LEASE, max_attempts=3)
    assert new is not None and new.number == old.number and new.token > old.token
    before = manifest_bytes(tmp_path)
    staged = stage(tmp_path, old.number, old.token)
    assert store.publish(old.number, old.token, staged, 99) is False
    assert not staged.exists()
    assert not result_path(tmp_path, old.number).exists()
    assert manifest_bytes(tmp_path) == before
    # The successor's own result is not disturbed by the loser either.
    mine = stage(tmp_path, new.number, new.token)
    assert store.publish(new.number, new.token, mine, 5)
    stale_again = stage(tmp_path, old.number, old.token)
    assert store.publish(old.number, old.token, stale_again, 99) is False
    assert json.loads(result_path(tmp_path, 1).read_text(encoding="utf-8")) == result_json(1)
    assert store.read().entry(1).tokens == 5  # type: ignore[union-attr]


def test_claim_completes_a_stale_claim_whose_result_exists(tmp_path: Path) -> None:
    now = [1000.0]
    store = ManifestStore(tmp_path, clock=lambda: now[0], lock_timeout=10)
    store.join(book_path="/b", sha256=SHA, title="B", chapters=CHAPTERS[:2])
    first = store.claim("elsewhere:1:w", lease=LEASE, max_attempts=3, wanted=[1])
    assert first is not None
    # Its worker published chapters/001.json and died before recording it.
    write_json_atomic(result_path(tmp_path, 1), result_json(1, 30, 12))
    now[0] += LEASE + 1
    got = store.claim("elsewhere:2:w", lease=LEASE, max_attempts=3)
    assert got is not None and got.number == 2
    e = store.read().entry(1)  # type: ignore[union-attr]
    assert (e.status, e.owner, e.tokens) == (mf.Status.COMPLETED, None, 42)
    # The dead worker's token no longer works.
    assert store.heartbeat(1, first.token) is False
    # And when nothing else is left, the claim says so.
    assert store.claim("elsewhere:3:w", lease=LEASE, max_attempts=3, wanted=[1]) is None


class Counted:
    """Counts the store's lock acquisitions and manifest writes."""

    def __init__(self, store: ManifestStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.locks = self.writes = 0
        locked, write = store.locked, store._write

        @contextmanager
        def counted_locked() -> Iterator[None]:
            self.locks += 1
            with locked():
                yield

        def counted_write(manifest: mf.Manifest, base: mf.Manifest | None) -> None:
            self.writes += 1
            write(manifest, base)

        monkeypatch.setattr(store, "locked", counted_locked)
        monkeypatch.setattr(store, "_write", counted_write)


def test_a_publish_cut_short_before_its_write_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed between renaming its result into place and writing the manifest: the
    manifest is as before, and whoever takes the chapter over finds the result done."""
    now = [1000.0]
    store = ManifestStore(tmp_path, clock=lambda: now[0], lock_timeout=10)
    store.join(book_path="/b", sha256=SHA, title="B", chapters=CHAPTERS[:2])
    first = store.claim("elsewhere:1:w", lease=LEASE, max_attempts=3)
    assert first is not None
    before = files_bytes(tmp_path)

    def killed(manifest: mf.Manifest, base: mf.Manifest | None) -> None:
        raise KeyboardInterrupt  # stands in for the kill: nothing after it runs

    monkeypatch.setattr(store, "_write", killed)
    with pytest.raises(KeyboardInterrupt):
        store.publish(1, first.token, stage(tmp_path, 1, first.token), 12)
    monkeypatch.undo()
    assert files_bytes(tmp_path) == before
    assert not (tmp_path / LOCK_NAME).exists()
    assert result_path(tmp_path, 1).exists()
    now[0] += LEASE + 1
    got = ManifestStore(tmp_path, clock=lambda: now[0]).claim(
        "elsewhere:2:w", lease=LEASE, max_attempts=3
    )
    assert got is not None and got.number == 2
    m = store.read()
    assert m is not None and m.entry(1).status is mf.Status.COMPLETED


def test_claim_reclaims_a_stale_chapter_whose_result_is_corrupt(tmp_path: Path) -> None:
    now = [1000.0]
    store = ManifestStore(tmp_path, clock=lambda: now[0], lock_timeout=10)
    store.join(book_path="/b", sha256=SHA, title="B", chapters=CHAPTERS[:1])
    first = store.claim("elsewhere:1:w", lease=LEASE, max_attempts=3)
    assert first is not None
    result_path(tmp_path, 1).write_text('{"format": 1, "chap', encoding="utf-8")
    now[0] += LEASE + 1
    got = store.claim("elsewhere:2:w", lease=LEASE, max_attempts=3)
    assert got is not None and got.number == 1 and got.token > first.token


@pytest.mark.slow
def test_claim_reclaims_from_a_dead_process(tmp_path: Path) -> None:
    store = joined(tmp_path)
    with children() as procs:
        gone = spawn(procs, "pass")
        gone.wait()
    first = store.claim(mf.owner_id("w1", pid=gone.pid), lease=LEASE, max_attempts=3)
    assert first is not None and first.number == 1
    got = store.claim(mf.owner_id("w2"), lease=LEASE, max_attempts=3)
    assert got is not None and got.number == 1 and got.reason.startswith("owner")


# --- the lock ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_dead_holders_lock_is_broken_at_once(tmp_path: Path) -> None:
    store = joined(tmp_path)
    store = ManifestStore(tmp_path, lock_timeout=20)  # default 10-minute lifetime
    with children() as procs:
        holder, _release = hold_lock(procs, tmp_path)
        assert lock_holder(tmp_path / LOCK_NAME).pid == holder.pid  # type: ignore[union-attr]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # left behind
    started = time.monotonic()
    assert store.claim("h:1:w", lease=LEASE, max_attempts=3) is not None
    assert time.monotonic() - started < 3.0  # not the lifetime, not the timeout
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_live_holders_lock_expires_after_the_lifetime_and_not_before(tmp_path: Path) -> None:
    joined(tmp_path)
    lifetime = 1.0
    lock_file = tmp_path / LOCK_NAME
    with children() as procs:
        holder, release = hold_lock(procs, tmp_path)
        taken_at = lock_file.stat().st_mtime
        impatient = ManifestStore(tmp_path, lock_lifetime=lifetime, lock_timeout=0.3)
        with pytest.raises(LockTimeout):
            impatient.claim("h:1:w", lease=LEASE, max_attempts=3)
        assert lock_holder(lock_file).pid == holder.pid  # type: ignore[union-attr]

        store = ManifestStore(tmp_path, lock_lifetime=lifetime, lock_timeout=10)
        with store.locked():
            got_at = time.time()
            assert got_at - taken_at >= lifetime - 0.05  # not before the lifetime
            assert got_at - taken_at < lifetime + 2.0  # but soon after it
            assert lock_holder(lock_file).pid == os.getpid()  # type: ignore[union-attr]
            # The old holder, still alive, releases "its" lock: ours must survive that.
            release.touch()
            wait_for((tmp_path / "holder.ready.released").exists, what="the old holder's release")
            assert lock_holder(lock_file).pid == os.getpid()  # type: ignore[union-attr]
        assert holder.wait(timeout=10) == 0
    assert not lock_file.exists()


RACER = """
import json, os, sys, time
from pathlib import Path
from imaginize.coordination.store import ManifestStore
out, go, log, rounds = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
store = ManifestStore(out, lock_timeout=30)
inside = out / "inside"
while not go.exists():
    time.sleep(0.001)
records = []
for _ in range(rounds):
    with store.locked():
        enter = time.monotonic()
        try:
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            alone = True
        except FileExistsError:
            alone = False
        time.sleep(0.02)
        if alone:
            os.unlink(inside)
        records.append([enter, time.monotonic(), alone])
log.with_suffix(".tmp").write_text(json.dumps(records))
log.with_suffix(".tmp").rename(log)  # whole: the test reads it as soon as it exists
"""


@pytest.mark.slow
def test_racers_on_an_expired_lock_take_it_one_at_a_time(tmp_path: Path) -> None:
    joined(tmp_path)
    lock_file = tmp_path / LOCK_NAME
    racers, rounds = 5, 3
    go = tmp_path / "go"
    logs = [tmp_path / f"racer{i}.json" for i in range(racers)]
    with children() as procs:
        _holder, _release = hold_lock(procs, tmp_path)
        # A live holder whose lock is an hour old: every racer judges it expired at once.
        hour_ago = time.time() - 3600
        os.utime(lock_file, (hour_ago, hour_ago))
        for log in logs:
            spawn(procs, RACER, tmp_path, go, log, rounds)
        go.touch()
        wait_for(lambda: all(log.exists() for log in logs), timeout=30, what="the racers")
    intervals = sorted(
        (enter, leave, alone)
        for log in logs
        for enter, leave, alone in json.loads(log.read_text(encoding="utf-8"))
    )
    assert len(intervals) == racers * rounds
    assert all(alone for _, _, alone in intervals), "two racers were inside at once"
    for (_, leave, _), (enter, _, _) in pairwise(intervals):
        assert leave <= enter, "critical sections overlap"
    assert not lock_file.exists()
    assert not list(tmp_path.glob(f"{LOCK_NAME}.*")), "a break file was left behind"


@pytest.mark.slow
def test_lock_timeout_names_the_lock_file_and_the_holder(tmp_path: Path) -> None:
    joined(tmp_path)
    store = ManifestStore(tmp_path, lock_timeout=0.3)
    with children() as procs:
        holder, _release = hold_lock(procs, tmp_path)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            store.heartbeat(1, 1)
        assert time.monotonic() - started >= 0.3
    message = str(caught.value)
    assert str(tmp_path / LOCK_NAME) in message
    assert f"pid {holder.pid}" in message
    assert "imaginize unlock" in message
    assert caught.value.exit_code is ExitCode.LOCKED and int(ExitCode.LOCKED) == 4


@pytest.mark.slow
def test_a_lock_from_another_host_is_only_aged_out(tmp_path: Path) -> None:
    joined(tmp_path)
    lock_file = tmp_path / LOCK_NAME
    # A pid that does not run here: on another host that proves nothing.
    with children() as procs:
        gone = spawn(procs, "pass")
        gone.wait()
    lock_file.write_text(f"{gone.pid}\nsome-other-host\n", encoding="utf-8")
    with pytest.raises(LockTimeout, match="some-other-host"):
        ManifestStore(tmp_path, lock_timeout=0.2).heartbeat(1, 1)
    assert lock_file.exists()
    past = time.time() - 700
    os.utime(lock_file, (past, past))
    started = time.monotonic()
    assert ManifestStore(tmp_path, lock_timeout=10).claim("h:1:w", lease=LEASE, max_attempts=3)
    assert time.monotonic() - started < 3.0


# --- sweeping temp files ----------------------------------------------------------------------


def test_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    now = 1_000_000.0
    files = {
        "old": tmp_path / ".imaginize.manifest.json.a1b2.tmp",
        "edge": tmp_path / ".001.json.c3d4.tmp",
        "fresh": tmp_path / ".002.json.e5f6.tmp",
        "visible": tmp_path / "notes.tmp",
        "staged": tmp_path / ".003.7.json",
        "lock": tmp_path / LOCK_NAME,
    }
    ages = {"old": 3600, "edge": 60, "fresh": 59, "visible": 3600, "staged": 3600, "lock": 3600}
    for key, path in files.items():
        path.write_text("x", encoding="utf-8")
        os.utime(path, (now - ages[key], now - ages[key]))
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / ".x.json.zz.tmp"
    nested.write_text("x", encoding="utf-8")
    os.utime(nested, (now - 3600, now - 3600))
    assert sweep_temp_files(tmp_path, older_than=60.0, now=now) == 2
    assert {k for k, p in files.items() if p.exists()} == {"fresh", "visible", "staged", "lock"}
    assert nested.exists()  # one folder at a time
    assert sweep_temp_files(tmp_path / "missing", now=now) == 0


def test_join_sweeps_results_staged_by_dead_workers(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    store.join(book_path="b", sha256="s", title="T", chapters=[(1, "One"), (2, "Two")])
    claim = store.claim("host:1:w1", lease=600, max_attempts=3)
    assert claim is not None
    chapters = tmp_path / "chapters"
    live = chapters / f".001.{claim.token}.json"
    orphan = chapters / ".002.99.json"
    live.write_text("{}")
    orphan.write_text("{}")
    store.join(book_path="b", sha256="s", title="T", chapters=[(1, "One"), (2, "Two")])
    assert live.exists()  # its claim may still publish it
    assert not orphan.exists()


# --- the stateful model: stores on one folder against the pure transitions -------------------

SM_LEASE = 100.0


class JournalMachine(RuleBasedStateMachine):
    """Two writing stores and a reading one on one folder, with compactions, torn lines of
    killed writers and compactions cut short, checked against the pure transitions applied to
    a manifest in memory: every store, and a store that never read before, reads exactly it."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="imaginize-journal-"))
        self.saved = journal.MIN_JOURNAL_BYTES, journal.write_atomic
        journal.MIN_JOURNAL_BYTES = 1500  # a compaction every few transactions
        self.now = 1000.0
        clock = lambda: self.now  # noqa: E731
        self.writers = [ManifestStore(self.folder, clock=clock, lock_timeout=10) for _ in "ab"]
        self.reader = ManifestStore(self.folder)
        self.model = self.writers[0].join(
            book_path="/b", sha256=SHA, title="B", chapters=[(n, f"C{n}") for n in range(1, 6)]
        )
        self.held: list[tuple[int, int]] = []

    def teardown(self) -> None:
        journal.MIN_JOURNAL_BYTES, journal.write_atomic = self.saved
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, index: int, change: Callable[[mf.Manifest], tuple[mf.Manifest, Any]]) -> Any:
        """`change` through writer `index`, and on the model; their outcomes must agree."""
        outcome = self.writers[index].transact(change)
        self.model, expected = change(self.model)
        assert outcome == expected
        return outcome

    @rule(index=st.integers(0, 1))
    def claim(self, index: int) -> None:
        now = self.now
        got = self.both(index, lambda m: mf.claim(m, "h:1:w", now, lease=SM_LEASE))
        if got is not None:
            self.held.append((got.number, got.token))

    @precondition(lambda self: bool(self.held))
    @rule(
        data=st.data(),
        index=st.integers(0, 1),
        op=st.sampled_from(["beat", "done", "fail", "back"]),
    )
    def settle(self, data: st.DataObject, index: int, op: str) -> None:
        number, token = data.draw(st.sampled_from(self.held))
        now = self.now
        if op == "beat":
            self.both(index, lambda m: mf.heartbeat(m, number, token, now))
            return
        self.held.remove((number, token))
        if op == "done":
            self.both(index, lambda m: mf.complete(m, number, token, now, 7))
        elif op == "fail":
            self.both(index, lambda m: mf.fail(m, number, token, now, "err", retryable=True))
        else:
            self.both(index, lambda m: mf.release(m, number, token))

    @rule(index=st.integers(0, 1), number=st.integers(6, 9), add=st.booleans())
    def add_or_drop(self, index: int, number: int, add: bool) -> None:
        """Entries listed or unlisted, as image units are: a line with `put` or `drop`."""

        def change(m: mf.Manifest) -> tuple[mf.Manifest, None]:
            others = [e for e in m.chapters if e.number != number]
            listed = [*others, mf.Entry(number, f"C{number}")] if add else others
            return replace(m, chapters=tuple(sorted(listed, key=lambda e: e.number))), None

        self.both(index, change)
        self.held = [(n, t) for n, t in self.held if n != number]

    @rule(dt=st.sampled_from([1.0, SM_LEASE + 1.0]))
    def advance_clock(self, dt: float) -> None:
        self.now += dt

    @rule(index=st.integers(0, 1))
    def compact(self, index: int) -> None:
        self.writers[index].compact()

    @rule(torn=st.sampled_from([b'{"seq": 99, "upd', b"\0" * 64, b'{"seq": 1, "put": [{\n']))
    def killed_mid_append(self, torn: bytes) -> None:
        """A writer killed part-way through its line: the bytes it left at the journal's end
        (after cutting off the torn line of the writer killed before it, if any)."""
        files = ManifestStore(self.folder)._files
        files.read()
        view = files._view
        assert view is not None
        if not view.current:
            return  # a compaction cut short: the next writer compacts instead of appending
        with (self.folder / JOURNAL_NAME).open("r+b") as handle:
            handle.truncate(view.offset)
            handle.seek(view.offset)
            handle.write(torn)

    @rule(index=st.integers(0, 1))
    def killed_mid_compaction(self, index: int) -> None:
        """A compaction killed after its snapshot, before its new journal."""
        calls: list[Path] = []

        def killed(path: Path, data: bytes) -> None:
            if calls:
                raise KeyboardInterrupt
            calls.append(path)
            self.saved[1](path, data)

        journal.write_atomic = killed
        try:
            self.writers[index].compact()
        except KeyboardInterrupt:
            pass
        finally:
            journal.write_atomic = self.saved[1]

    @invariant()
    def every_reader_reads_the_model(self) -> None:
        for store in [*self.writers, self.reader, ManifestStore(self.folder)]:
            seen = store.read()
            assert seen is not None
            assert (seen.chapters, seen.next_token) == (self.model.chapters, self.model.next_token)


JournalMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.pytestmark = [pytest.mark.slow]


class NoteFiles:
    """Another kind of unit, for the store's `files` strategy: unit N is done once
    `notes/N.txt` exists; a failed unit 99 is dropped from the manifest."""

    manifest_name, lock_name, results_dir = ".notes.json", ".notes.lock", "notes"

    def __init__(self, out: Path) -> None:
        self.out = out

    def finished(
        self, numbers: Iterable[int], ours: Provenance, refused: dict[int, str] | None = None
    ) -> dict[int, int]:
        return {n: 0 for n in numbers if (self.out / "notes" / f"{n}.txt").exists()}

    def result_files(self, number: int) -> list[Path]:
        return [self.out / "notes" / f"{number}.txt", self.out / "notes" / f"{number}.meta"]

    def after_failure(self, manifest: mf.Manifest, number: int) -> mf.Manifest:
        if number != 99:
            return manifest
        return replace(manifest, chapters=tuple(e for e in manifest.chapters if e.number != 99))


def test_a_store_keeps_another_kinds_units_by_its_files(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path, files=NoteFiles(tmp_path), lock_timeout=10)
    (tmp_path / "notes").mkdir()
    for name in ("1.txt", "1.meta", "2.txt"):
        (tmp_path / "notes" / name).write_text("x")

    def join(force: list[int] | None = None) -> mf.Manifest:
        units = [(1, "one"), (2, "two"), (99, "gone")]
        return store.join(book_path="b", sha256=SHA, title="B", chapters=units, force=force or ())

    assert store.path == tmp_path / ".notes.json" and store.lock_path == tmp_path / ".notes.lock"
    assert not (tmp_path / MANIFEST_NAME).exists()
    done = mf.Status.COMPLETED
    assert [e.status is done for e in join().chapters] == [True, True, False]
    # --force removes every file the kind says a finished unit leaves; a number not listed
    # is no error and removes nothing.
    forced = join(force=[1, 7])
    assert forced.entry(1).status is mf.Status.PENDING
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["2.txt"]
    # A failure changes what the kind says it does.
    claim = store.claim("host:1:w1", lease=60, max_attempts=3, wanted=[99])
    assert claim is not None and claim.number == 99
    assert store.fail(claim.number, claim.token, "its source is gone")
    after = store.read()
    assert after is not None and [e.number for e in after.chapters] == [1, 2]
