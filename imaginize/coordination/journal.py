"""The manifest's files: a snapshot and a journal of the changes made since (manifest-format.md).

`.imaginize.manifest.json` is a snapshot of the whole manifest, replaced atomically
(`write_atomic`). `.imaginize.manifest.log` beside it is its journal: a header line naming the
snapshot's `generation`, then one JSON line per transaction with the entries it changed. A
transaction appends one line and fsyncs it; its cost does not depend on the number of
chapters. When the journal outgrows the snapshot (and a floor), the next writer compacts: a
new snapshot with a new generation, then a new journal in its place; so the amortised cost of
a transaction is constant too.

What is guaranteed, given that writers hold the manifest's lock (`store.py`):
- a reader sees a whole transaction or none of it: a line counts only when it is complete
  (newline-terminated, valid JSON, the next sequence number);
- a writer killed mid-append leaves at most a torn last line, which readers ignore and the
  next writer cuts off before appending;
- a writer killed during a compaction leaves the old snapshot and journal, or the new
  snapshot and the old journal, which it names as `supersedes` (its lines are in the new
  snapshot and are not applied again); never a snapshot missing a committed line.

What is not: a reader without the lock may see a version a few transactions old (as it could
before the journal); it never sees a mixture of versions. A reader caches what it read, keyed
by the snapshot's stat and the journal's generation, and reads only the journal's new bytes.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from contextlib import suppress
from dataclasses import dataclass, replace
from itertools import compress
from operator import attrgetter, is_not
from pathlib import Path
from typing import Any

from imaginize.coordination import manifest as mf
from imaginize.coordination.atomic import write_atomic
from imaginize.errors import ManifestError

JOURNAL_FORMAT = 1
# Compaction: when the journal would grow past the larger of this and the snapshot's size.
MIN_JOURNAL_BYTES = 64 * 1024
# Lockless reads that meet a compaction half-way through read again, at most this often.
READ_ATTEMPTS = 5


def journal_path(snapshot: Path) -> Path:
    """`.imaginize.manifest.json` -> `.imaginize.manifest.log` (and the images' likewise)."""
    return snapshot.with_suffix(".log")


@dataclass(frozen=True)
class _View:
    """What a reader made of the files, and where to go on from."""

    manifest: mf.Manifest | None
    generation: str | None  # the snapshot's (None: no snapshot, or one from format 1)
    snapshot_key: tuple[int, int, int, int] | None
    snapshot_size: int
    journal: str | None  # the generation the journal's header names (None: no journal)
    offset: int  # where the next line of the snapshot's own journal will start
    seq: int  # the last sequence number applied
    journal_size: int  # bytes in the journal when read (more than `offset`: a torn tail)

    @property
    def current(self) -> bool:
        """The journal is the snapshot's own, to be appended to."""
        return self.generation is not None and self.journal == self.generation


_UNREAD = object()  # `ManifestFiles._base` before a read, and after a write


class _Race(Exception):
    """The files changed between two reads (a compaction): read again."""


class ManifestFiles:
    """The snapshot and journal of one manifest. `read` without the lock is safe; `write`
    only under the lock, after a `read` under the same lock."""

    def __init__(self, snapshot: Path) -> None:
        self.path = snapshot
        self.journal_path = journal_path(snapshot)
        self._view: _View | None = None
        # What `read` returned last, until a write: the only version `write` may start from.
        self._base: mf.Manifest | object | None = _UNREAD

    # --- reading -----------------------------------------------------------------------------

    def read(self) -> mf.Manifest | None:
        problem: ManifestError | None = None
        for _ in range(READ_ATTEMPTS):
            try:
                view = self._read_once(self._view)
            except _Race as race:
                problem = ManifestError(str(race))
                self._view = None
                continue
            self._view = view
            if view.manifest is not None:
                view.manifest.rebase()
            self._base = view.manifest
            return view.manifest
        assert problem is not None
        raise problem

    def _read_once(self, cached: _View | None) -> _View:
        try:
            handle = open(self.journal_path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            handle = None
        except OSError as exc:
            raise ManifestError(f"{self.journal_path}: unreadable journal ({exc})") from None
        try:
            journal, header = _header(handle, self.journal_path) if handle else (None, 0)
            key = _stat_key(self.path)
            if key is None:
                return _View(None, None, None, 0, journal, header, 0, 0)
            if (
                cached is not None
                and cached.manifest is not None
                and cached.snapshot_key == key
                and cached.journal == journal
            ):
                view = cached
            else:
                view = self._snapshot(journal, header)
            if handle is None or not view.current:
                return view
            return self._replay(view, handle)
        finally:
            if handle is not None:
                handle.close()

    def _snapshot(self, journal: str | None, header: int) -> _View:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            raise _Race(f"{self.path}: replaced while read") from None
        except OSError as exc:
            raise ManifestError(f"{self.path}: unreadable manifest ({exc})") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise ManifestError(f"{self.path}: unreadable manifest ({exc})") from None
        try:
            manifest = mf.Manifest.from_json(data)
            generation = _generation(data, "generation")
            supersedes = _generation(data, "supersedes")
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{self.path}: invalid manifest ({exc})") from None
        if journal is not None and journal != generation and journal != supersedes:
            # Either a compaction between reading the journal's header and the snapshot (read
            # again), or a journal that belongs to neither this snapshot nor its predecessor.
            raise _Race(
                f"{self.journal_path}: journal of generation {journal}, but the manifest is of "
                f"generation {generation}; remove the journal only if no imaginize is running"
            )
        return _View(manifest, generation, _key(stat), len(raw), journal, header, 0, header)

    def _replay(self, view: _View, handle: Any) -> _View:
        """`view` with the journal's lines after `view.offset` applied."""
        handle.seek(view.offset)
        tail = handle.read()
        size = view.offset + len(tail)
        assert view.manifest is not None
        manifest, seq, start = view.manifest, view.seq, 0
        puts: dict[int, mf.Entry] = {}
        drops: set[int] = set()
        next_token, updated_at = manifest.next_token, manifest.updated_at
        batches = manifest.batches
        while True:
            end = tail.find(b"\n", start)
            if end < 0:
                break  # nothing more, or a line still being written (or torn)
            try:
                record = json.loads(tail[start:end])
            except ValueError:
                record = None
            if record is None or not isinstance(record, dict):
                if tail.find(b"\n", end + 1) >= 0:
                    raise _Race(f"{self.journal_path}: a damaged line before others")
                break  # a torn last line: ignored (the next writer cuts it off)
            try:
                change = _change(record, seq + 1)
            except ValueError as exc:
                where = f"line {seq + 2}"  # the header is line 1
                raise _Race(f"{self.journal_path}: invalid journal ({where}: {exc})") from None
            for entry in change.puts:
                puts[entry.number] = entry
                drops.discard(entry.number)
            for number in change.drops:
                puts.pop(number, None)
                drops.add(number)
            next_token, updated_at = change.next_token, change.updated_at
            if change.batches is not None:
                batches = change.batches
            seq += 1
            start = end + 1
        if seq != view.seq:
            try:
                manifest = _apply(manifest, puts, drops, next_token, updated_at)
                if batches != manifest.batches:
                    manifest = replace(manifest, batches=batches)
            except ValueError as exc:
                raise _Race(f"{self.journal_path}: invalid journal ({exc})") from None
        return _View(
            manifest,
            view.generation,
            view.snapshot_key,
            view.snapshot_size,
            view.journal,
            view.offset + start,
            seq,
            size,
        )

    # --- writing (under the lock) ----------------------------------------------------------

    def write(self, updated: mf.Manifest, base: mf.Manifest | None) -> None:
        """Make `updated` the manifest: one journal line when the change can be said in one
        (the common case), else a compaction. Only under the lock, where `read` gave `base`
        (None: no manifest) and nothing read or written since. What was written is not kept:
        the next `read` reads it back from the files like anyone else's change."""
        view = self._view
        if self._base is not base:
            raise RuntimeError(f"{self.path}: written from a version other than the last read")
        self._base = _UNREAD
        line = None
        if view is not None and view.manifest is not None and view.current:
            line = _line(view.manifest, updated, view.seq + 1)
        if (
            view is None
            or line is None
            or view.offset + len(line) > max(MIN_JOURNAL_BYTES, view.snapshot_size)
        ):
            self.compact(updated)
            return
        with open(self.journal_path, "r+b", buffering=0) as handle:
            if (
                _header(handle, self.journal_path)[0] != view.journal
                or os.fstat(handle.fileno()).st_size != view.journal_size
            ):
                # Written since this process read it under the lock: only a holder whose
                # lock was broken as expired can be here. Writing would garble the journal.
                self._view = None
                raise ManifestError(
                    f"{self.journal_path}: changed by another process while this one held the "
                    "lock (was it frozen for longer than the lock lifetime?); nothing written"
                )
            if view.journal_size != view.offset:
                handle.truncate(view.offset)  # a torn line of a writer that was killed
            try:
                handle.seek(view.offset)
                written = 0
                while written < len(line):
                    written += handle.write(line[written:])
                _sync(handle.fileno())
            except BaseException:
                # Not committed: take the line back, so that nobody reads it from the page
                # cache (were this to fail too, it is a torn or an unsynced line either way).
                self._view = None
                with suppress(OSError):
                    handle.truncate(view.offset)
                raise

    def compact(self, manifest: mf.Manifest) -> None:
        """Write `manifest` as a new snapshot, then give it a new, empty journal. Killed
        between the two, the old journal stays, named by the new snapshot as superseded. The
        next `read` parses the new snapshot."""
        view = self._view
        self._base = _UNREAD
        generation = secrets.token_hex(8)
        data = manifest.to_json()
        data["generation"] = generation
        data["supersedes"] = view.journal if view is not None else None
        raw = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
        self._view = None
        write_atomic(self.path, raw)
        write_atomic(self.journal_path, _header_line(generation))


# --- the journal's lines --------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    puts: list[mf.Entry]
    drops: list[int]
    next_token: int
    updated_at: float
    # The whole `batches` list when the line changed it (None: unchanged).
    batches: tuple[mf.BatchRecord, ...] | None = None


def _header_line(generation: str) -> bytes:
    return (json.dumps({"journal": JOURNAL_FORMAT, "generation": generation}) + "\n").encode()


def _header(handle: Any, path: Path) -> tuple[str, int]:
    """The generation the journal's header names, and the header's length. A journal is
    created whole (`write_atomic`), so a missing or bad header is a damaged file."""
    first = handle.readline(4096)
    try:
        data = json.loads(first) if first.endswith(b"\n") else None
        if not isinstance(data, dict) or data.get("journal") != JOURNAL_FORMAT:
            raise ValueError("no journal header")
        generation = _generation(data, "generation")
        if generation is None:
            raise ValueError("generation: missing")
    except ValueError as exc:
        raise ManifestError(f"{path}: invalid journal ({exc})") from None
    return generation, len(first)


def _generation(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: must be a string or null, not {value!r}")
    return value


def _change(record: dict[str, Any], seq: int) -> _Change:
    """One journal line, checked as the snapshot's fields are (`manifest.Manifest.from_json`)."""
    if record.get("seq") != seq or type(record.get("seq")) is not int:
        raise ValueError(f"seq: expected {seq}, not {record.get('seq')!r}")
    next_token = record.get("nextToken")
    if type(next_token) is not int or next_token < 1:
        raise ValueError(f"nextToken: must be a positive integer, not {next_token!r}")
    updated_at = record.get("updatedAt")
    if type(updated_at) not in (int, float) or not math.isfinite(updated_at):
        raise ValueError(f"updatedAt: must be a finite number, not {updated_at!r}")
    puts, drops = record.get("put", []), record.get("drop", [])
    if not isinstance(puts, list) or not isinstance(drops, list):
        raise ValueError("put and drop must be arrays")
    entries = []
    for index, item in enumerate(puts):
        try:
            entries.append(mf.Entry.from_json(item))
        except ValueError as exc:
            raise ValueError(f"put[{index}]: {exc}") from None
    if any(type(n) is not int or n < 0 for n in drops):
        raise ValueError(f"drop: must hold chapter numbers, not {drops!r}")
    batches = mf._batch_records(record) if "batches" in record else None
    return _Change(entries, drops, next_token, float(updated_at), batches)


def _apply(
    manifest: mf.Manifest,
    puts: dict[int, mf.Entry],
    drops: set[int],
    next_token: int,
    updated_at: float,
) -> mf.Manifest:
    """`manifest` with the entries put (a new number in its place by number) and dropped."""
    if next_token < manifest.next_token:
        raise ValueError(f"nextToken went back from {manifest.next_token} to {next_token}")
    if any(e.token >= next_token for e in puts.values()):
        raise ValueError(f"a token is not below nextToken {next_token}")
    positions = manifest._positions()
    if not drops and all(n in positions for n in puts):
        return manifest.with_entries(puts.values(), next_token=next_token, updated_at=updated_at)
    kept = [puts.get(e.number, e) for e in manifest.chapters if e.number not in drops]
    added = [e for n, e in puts.items() if n not in positions]
    chapters = tuple(sorted(kept + added, key=attrgetter("number"))) if added else tuple(kept)
    return mf.Manifest(
        manifest.book_path,
        manifest.book_sha256,
        manifest.title,
        chapters,
        next_token,
        manifest.created_at,
        updated_at,
        manifest.batches,
    )


def _line(before: mf.Manifest, after: mf.Manifest, seq: int) -> bytes | None:
    """The journal line taking `before` to `after`, or None when a line cannot say it (the
    book's fields changed, or the entries were reordered): then a snapshot is written."""
    if (before.book_path, before.book_sha256, before.title, before.created_at) != (
        after.book_path,
        after.book_sha256,
        after.title,
        after.created_at,
    ):
        return None
    # The batches (a few records, changed a few times a round): the whole list, when changed.
    batches = None if before.batches == after.batches else after.batches
    known = after.changed_since(before)
    if known is not None:
        return _encode(seq, after, known, [], batches)
    old, new = before.chapters, after.chapters
    if len(old) == len(new):
        # The positions whose entry is another object: a C loop, not a Python one.
        changed = list(compress(range(len(new)), map(is_not, old, new)))
        if all(old[i].number == new[i].number for i in changed):
            puts, drops = [new[i] for i in changed], []
        else:
            return _structural(before, after, seq, batches)
    else:
        return _structural(before, after, seq, batches)
    return _encode(seq, after, puts, drops, batches)


def _structural(
    before: mf.Manifest,
    after: mf.Manifest,
    seq: int,
    batches: tuple[mf.BatchRecord, ...] | None = None,
) -> bytes | None:
    """Entries added or dropped (image units): a line, if replaying it gives `after` exactly."""
    listed = {e.number: e for e in before.chapters}
    numbers = {e.number for e in after.chapters}
    puts = [e for e in after.chapters if listed.get(e.number) is not e]
    drops = sorted(n for n in listed if n not in numbers)
    try:
        replayed = _apply(
            before, {e.number: e for e in puts}, set(drops), after.next_token, after.updated_at
        )
    except ValueError:  # a line a reader would refuse: the snapshot says it instead
        return None
    if replayed.chapters != after.chapters:
        return None
    return _encode(seq, after, puts, drops, batches)


def _encode(
    seq: int,
    after: mf.Manifest,
    puts: list[mf.Entry],
    drops: list[int],
    batches: tuple[mf.BatchRecord, ...] | None = None,
) -> bytes:
    record: dict[str, Any] = {
        "seq": seq,
        "updatedAt": after.updated_at,
        "nextToken": after.next_token,
        "put": [e.to_json() for e in puts],
    }
    if drops:
        record["drop"] = drops
    if batches is not None:
        record["batches"] = [b.to_json() for b in batches]
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


# --- files ------------------------------------------------------------------------------------


def _key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _stat_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        return _key(os.stat(path))
    except FileNotFoundError:
        return None


def _sync(fd: int) -> None:
    # The line's bytes and the file's new size; the folder entry did not change.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)
