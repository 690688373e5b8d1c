"""The offline catalogue of a book, kept in a file beside its manifest: built once per book,
not once per worker.

Building the catalogue reads every sentence of the book (20 s and most of a worker's memory
on a 2-million-word book); what chapters need of it afterwards is small (the entries and the
words that are names). So the first worker to need it builds it and writes that part to
`.imaginize.catalogue.json` in the output folder; the other workers of the run, later runs and
other terminals on the same folder load it in a fraction of a second.

Guarantees: the file is written with `write_atomic`, so a reader sees a whole file or none,
and a writer killed mid-way leaves no half file (only a temp file the folder's sweep removes).
It is used only when it was built from exactly these chapter texts by exactly this offline
analyzer (`catalogue_key`: a digest of the texts and of the analyzer's source files); a file
that is unreadable, damaged, or of another book or version is rebuilt and replaced, never
trusted. Builders on one machine take turns under a kernel lock (flock: released when its
holder dies, never stale), so N workers starting together build it once and the others wait
for it, then load it.

Limits: where the folder does not support the lock (some network file systems) or a builder
takes longer than `LOCK_WAIT`, workers build it at the same time, each for itself, and the
last complete write stays: the same content, so nothing is lost but time. A folder that
cannot be written to leaves every worker building its own, as without the file. Deleting the
file (or its `.lock`) is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from filelock import FileLock, Timeout

from imaginize.analysis.offline.catalogue import Catalogue
from imaginize.coordination.atomic import write_atomic

CACHE_NAME = ".imaginize.catalogue.json"
LOCK_NAME = ".imaginize.catalogue.lock"
FORMAT = 1
# Longer than any build (a 2-million-word book takes ~20 s): a builder that holds the lock
# this long is stuck, and the waiter builds its own.
LOCK_WAIT = 900.0
_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def analyzer_digest() -> str:
    """A digest of the offline analyzer's source files: any change to its heuristics makes a
    new version, whose catalogue may differ."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def catalogue_key(texts: Sequence[str]) -> str:
    """What a catalogue was built from: the analyzer's version and the chapters' texts."""
    h = hashlib.sha256(f"{FORMAT}\0{analyzer_digest()}\0{len(texts)}\0".encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(f"{len(data)}\0".encode() + data)
    return h.hexdigest()


def load(folder: Path, key: str) -> Catalogue | None:
    """The catalogue stored in `folder` for `key`, or None when there is none usable."""
    try:
        data = json.loads((Path(folder) / CACHE_NAME).read_bytes())
    except (OSError, ValueError):  # absent, unreadable, not JSON (UnicodeDecodeError too)
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    try:
        return Catalogue.from_json(data.get("catalogue"))
    except ValueError:
        return None


def store(folder: Path, key: str, catalogue: Catalogue) -> bool:
    """Write the catalogue for `key` into `folder`, all or nothing; False when it cannot be
    written (the run goes on without the file)."""
    text = json.dumps(
        {"format": FORMAT, "key": key, "catalogue": catalogue.to_json()},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    try:
        # Not fsynced: a file lost in a power cut is only built again.
        write_atomic(Path(folder) / CACHE_NAME, text, durable=False)
    except OSError:
        return False
    return True


def book_catalogue(texts: Sequence[str], folder: Path | None = None) -> Catalogue:
    """The catalogue of these chapter texts: from `folder`'s file when it holds theirs, else
    built (by one process at a time) and stored there. With no folder, just built."""
    if folder is None:
        return Catalogue(texts)
    key = catalogue_key(texts)
    found = load(folder, key)
    if found is not None:
        return found
    lock = FileLock(os.fspath(Path(folder) / LOCK_NAME), thread_local=False)
    try:
        lock.acquire(timeout=LOCK_WAIT)
    except (Timeout, OSError):
        return _build(texts, folder, key)  # no lock to be had: build it alongside
    try:
        # Whoever held the lock before us has likely just stored it.
        found = load(folder, key)
        return found if found is not None else _build(texts, folder, key)
    finally:
        lock.release()


def _build(texts: Sequence[str], folder: Path, key: str) -> Catalogue:
    catalogue = Catalogue(texts)
    store(folder, key, catalogue)
    return catalogue
