"""The manifest's format and state transitions (see manifest-format.md, which this follows).

The transitions are pure functions `Manifest -> (Manifest, outcome)` with the time passed in,
so they can be checked against a model without processes or sleeping. What they guarantee,
given that every caller applies them under the lock (see `store.py`):

- a chapter has at most one owner, and only `claim` gives it one;
- every claim takes a token greater than any before it in this manifest;
- `heartbeat`, `complete`, `fail` and `release` change a chapter only while it still carries
  the caller's token, so a worker whose claim was taken over cannot undo its successor's work;
- `completed` is final for workers; only `force_pending` (the user's --force) reopens it.

What they do not guarantee: that a reclaimed worker stops working. It keeps running until its
next fenced call tells it the claim is gone; its result is then discarded.
"""

from __future__ import annotations

import json
import math
import os
import socket
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from imaginize.settings import DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS

# 2: the manifest is a snapshot and a journal of the changes since (journal.py); an imaginize
# that knows only format 1 would read the snapshot alone, so a format-2 manifest must stop it.
FORMAT = 2
READABLE_FORMATS = (1, 2)


class Status(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    # Its requests are in a Batch API batch (`Entry.batch`): no worker claims it; the batch
    # run that ingests the replies completes it (imaginize/coordination/batch_state.py).
    BATCHED = "batched"


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batched chapter: its `custom_id` in the batch file, the digest of the
    request body (`key`, which its reply is filed under) and the `ref` of its BatchRecord."""

    custom_id: str
    key: str
    batch: str

    def to_json(self) -> dict[str, Any]:
        return {"customId": self.custom_id, "key": self.key, "batch": self.batch}


@dataclass(frozen=True)
class BatchRecord:
    """One batch file of this book: `ref` names it from the moment it is planned; `id` is the
    server's batch id once created, `input_file` the uploaded file's id once uploaded."""

    ref: str
    status: str = "unsent"
    id: str | None = None
    input_file: str | None = None
    requests: int = 0
    tokens: int = 0
    created_at: float = 0.0
    # host:pid:batch of the process uploading and creating it, while it does (a dead one's
    # is taken over).
    owner: str | None = None
    completed: int = 0
    failed: int = 0
    error: str | None = None
    ingested: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.id,
            "status": self.status,
            "inputFileId": self.input_file,
            "requests": self.requests,
            "tokens": self.tokens,
            "createdAt": self.created_at,
            "owner": self.owner,
            "completed": self.completed,
            "failed": self.failed,
            "error": self.error,
            "ingested": self.ingested,
        }

    @classmethod
    def from_json(cls, data: Any) -> BatchRecord:
        if not isinstance(data, dict):
            raise ValueError(f"must be an object, not {_show(data)}")
        return cls(
            ref=_field(data, "ref", str),
            status=_field(data, "status", str),
            id=_field(data, "id", str, None),
            input_file=_field(data, "inputFileId", str, None),
            requests=_count(data, "requests", 0),
            tokens=_count(data, "tokens", 0),
            created_at=_time(data, "createdAt", 0.0, nullable=False) or 0.0,
            owner=_field(data, "owner", str, None),
            completed=_count(data, "completed", 0),
            failed=_count(data, "failed", 0),
            error=_field(data, "error", str, None),
            ingested=_field(data, "ingested", bool, False),
        )


@dataclass(frozen=True)
class Entry:
    number: int
    title: str
    status: Status = Status.PENDING
    owner: str | None = None
    claimed_at: float | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    token: int = 0
    completed_at: float | None = None
    error: str | None = None
    retryable: bool = False
    retry_at: float | None = None
    tokens: int = 0
    # Tokens of attempts that published no result (failed, timed out, given back): spent
    # all the same, and counted in every total.
    spent_prompt: int = 0
    spent_completion: int = 0
    # On `batched`: the requests in flight (absent from the JSON when None).
    batch: tuple[BatchRequest, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "number": self.number,
            "title": self.title,
            "status": self.status.value,
            "owner": self.owner,
            "claimedAt": self.claimed_at,
            "heartbeatAt": self.heartbeat_at,
            "attempts": self.attempts,
            "token": self.token,
            "completedAt": self.completed_at,
            "error": self.error,
            "retryable": self.retryable,
            "retryAt": self.retry_at,
            "tokens": self.tokens,
            "spentPromptTokens": self.spent_prompt,
            "spentCompletionTokens": self.spent_completion,
        }
        if self.batch is not None:
            data["batch"] = [r.to_json() for r in self.batch]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        """Parse one chapter entry field by field; a ValueError names the first field that is
        wrong (a wrong type, an unknown status, a negative count)."""
        if not isinstance(data, dict):
            raise ValueError(f"must be an object, not {_show(data)}")
        status = _field(data, "status", str)
        if status not in _STATUSES:
            known = ", ".join(s.value for s in Status)
            raise ValueError(f"status: must be one of {known}, not {_show(status)}")
        return cls(
            number=_count(data, "number"),
            title=_field(data, "title", str),
            status=_STATUSES[status],
            owner=_field(data, "owner", str, None),
            claimed_at=_time(data, "claimedAt", None),
            heartbeat_at=_time(data, "heartbeatAt", None),
            attempts=_count(data, "attempts", 0),
            token=_count(data, "token", 0),
            completed_at=_time(data, "completedAt", None),
            error=_field(data, "error", str, None),
            retryable=_field(data, "retryable", bool, False),
            retry_at=_time(data, "retryAt", None),
            tokens=_count(data, "tokens", 0),
            spent_prompt=_count(data, "spentPromptTokens", 0),
            spent_completion=_count(data, "spentCompletionTokens", 0),
            batch=_batch_requests(data),
        )


@dataclass(frozen=True)
class Manifest:
    book_path: str
    book_sha256: str
    title: str
    chapters: tuple[Entry, ...]
    next_token: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    # --batch-api: the book's batch files (absent from the JSON when empty). A journal line
    # that changes them carries the whole list (a few records).
    batches: tuple[BatchRecord, ...] = ()

    # Two indexes, built on first use and handed on to the manifests `with_entries` derives
    # (which keep every chapter in its place), so that a transition on a book of 20,000
    # chapters costs no Python loop over all of them: where each number is, and which
    # entries a claim may ever take (see `_may_open`). They live in the instance's __dict__,
    # outside the dataclass fields: equality, repr and `replace` ignore them (a manifest made
    # by `replace` builds its own).

    def _positions(self) -> dict[int, int]:
        """Chapter number -> its index in `chapters` (the first, were one listed twice)."""
        positions: dict[int, int] | None = self.__dict__.get("_positions_index")
        if positions is None:
            numbers = [e.number for e in self.chapters]
            positions = dict(zip(reversed(numbers), range(len(numbers) - 1, -1, -1), strict=True))
            self.__dict__["_positions_index"] = positions
        return positions

    def open_positions(self) -> tuple[int, ...]:
        """Indexes, in book order, of the entries a claim may take now or later: neither
        completed nor failed for good by any claimant's rules (not retryable)."""
        found: tuple[int, ...] | None = self.__dict__.get("_open_index")
        if found is None:
            found = tuple(i for i, e in enumerate(self.chapters) if _may_open(e))
            self.__dict__["_open_index"] = found
        return found

    def changed_since(self, base: Manifest) -> list[Entry] | None:
        """The entries that may differ from `base`'s, when this manifest was made from it by
        `with_entries` alone (the same chapters in the same places, the same book); None when
        that is not known. Kept as a set of numbers and a weak reference to `base`, so that
        a store writes a transaction's changes without comparing every entry."""
        since = self.__dict__.get("_since")
        if since is None or since[0]() is not base:
            return None
        return [self.chapters[self._positions()[n]] for n in sorted(since[1])]

    def rebase(self) -> None:
        """Make this manifest the base of the ones `with_entries` derives from it from now on
        (`changed_since`): what a store does with the version it read or wrote."""
        self.__dict__.pop("_since", None)

    def entry(self, number: int) -> Entry:
        position = self._positions().get(number)
        if position is None:
            raise KeyError(number)
        return self.chapters[position]

    def with_entry(self, new: Entry) -> Manifest:
        return self.with_entries((new,))

    def with_entries(
        self,
        new: Iterable[Entry],
        *,
        next_token: int | None = None,
        updated_at: float | None = None,
    ) -> Manifest:
        """Each listed chapter replaced by its entry in `new` (one not listed is ignored), and
        `next_token` / `updated_at` when given. Copying the tuple of entries is the only cost
        that grows with the book, and it is a memory copy, not a loop in Python."""
        positions = self._positions()
        placed = [(positions[e.number], e) for e in new if e.number in positions]
        chapters: tuple[Entry, ...] = self.chapters
        opened = self.__dict__.get("_open_index")
        moved: list[tuple[int, bool]] = []
        if placed:
            copied = list(chapters)
            for position, entry in placed:
                was, now = _may_open(copied[position]), _may_open(entry)
                copied[position] = entry
                if was != now:
                    moved.append((position, now))
            chapters = tuple(copied)
        derived = Manifest(
            self.book_path,
            self.book_sha256,
            self.title,
            chapters,
            self.next_token if next_token is None else next_token,
            self.created_at,
            self.updated_at if updated_at is None else updated_at,
            self.batches,
        )
        derived.__dict__["_positions_index"] = positions
        root, numbers = self.__dict__.get("_since", (weakref.ref(self), frozenset()))
        derived.__dict__["_since"] = (root, numbers.union(e.number for _, e in placed))
        if opened is not None and not moved:
            derived.__dict__["_open_index"] = opened
        elif opened is not None and len(moved) <= 64:  # more: cheaper built afresh when needed
            kept = list(opened)
            for position, now in moved:
                at = bisect_left(kept, position)
                if now:
                    kept.insert(at, position)
                else:
                    del kept[at]
            derived.__dict__["_open_index"] = tuple(kept)
        return derived

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT,
            "book": {"path": self.book_path, "sha256": self.book_sha256, "title": self.title},
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "nextToken": self.next_token,
            "chapters": [e.to_json() for e in self.chapters],
        }
        if self.batches:
            data["batches"] = [b.to_json() for b in self.batches]
        return data

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse a manifest; a ValueError names the first field that does not follow the
        format (manifest-format.md): a wrong type, an unknown status, a negative count, a
        chapter number given twice."""
        if not isinstance(data, dict):
            raise ValueError(f"must be an object, not {_show(data)}")
        version = data.get("format")
        if type(version) is not int or version not in READABLE_FORMATS:
            raise ValueError(f"unsupported manifest format {version!r}")
        book = _field(data, "book", dict)
        try:
            book_path = _field(book, "path", str)
            book_sha256 = _field(book, "sha256", str)
            title = _field(book, "title", str, "")
        except ValueError as exc:
            raise ValueError(f"book.{exc}") from None
        chapters: list[Entry] = []
        seen: set[int] = set()
        for index, item in enumerate(_field(data, "chapters", list)):
            try:
                entry = Entry.from_json(item)
            except ValueError as exc:
                raise ValueError(f"chapters[{index}]: {exc}") from None
            if entry.number in seen:
                raise ValueError(f"chapters[{index}]: number {entry.number} appears twice")
            seen.add(entry.number)
            chapters.append(entry)
        next_token = _count(data, "nextToken")
        if next_token < 1:
            raise ValueError(f"nextToken: must be at least 1, not {next_token}")
        # Rule 4: every claim takes a token no earlier claim had.
        highest = max((e.token for e in chapters), default=0)
        if next_token <= highest:
            raise ValueError(f"nextToken: {next_token} is not above the token {highest} in use")
        return cls(
            book_path=book_path,
            book_sha256=book_sha256,
            title=title,
            chapters=tuple(chapters),
            next_token=next_token,
            created_at=_time(data, "createdAt", 0.0, nullable=False) or 0.0,
            updated_at=_time(data, "updatedAt", 0.0, nullable=False) or 0.0,
            batches=_batch_records(data),
        )


def _may_open(entry: Entry) -> bool:
    """Whether any claimant may take the entry now or later, with no user's --force or
    --retry-failed: everything but completed and failed for good."""
    status = entry.status
    return status is not Status.COMPLETED and (status is not Status.FAILED or entry.retryable)


# --- parsing ------------------------------------------------------------------------------

_REQUIRED: Any = object()
_KINDS = {str: "a string", bool: "true or false", dict: "an object", list: "an array"}


def _show(value: Any) -> str:
    text = json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _field(data: dict[str, Any], key: str, kind: type, default: Any = _REQUIRED) -> Any:
    """`data[key]` when it is of `kind`; `default` when absent (and when null if the default
    is None, i.e. the field is nullable); otherwise a ValueError naming the field."""
    if key not in data:
        if default is _REQUIRED:
            raise ValueError(f"{key}: missing")
        return default
    value = data[key]
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        nullable = " or null" if default is None else ""
        raise ValueError(f"{key}: must be {_KINDS[kind]}{nullable}, not {_show(value)}")
    return value


def _time(
    data: dict[str, Any], key: str, default: float | None, *, nullable: bool = True
) -> float | None:
    """A finite number (int or float, never a bool), or null where the field allows it."""
    value = data.get(key, default)
    if value is None and nullable:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if math.isfinite(number):
            return number
    wanted = "a finite number or null" if nullable else "a finite number"
    raise ValueError(f"{key}: must be {wanted}, not {_show(value)}")


def _count(data: dict[str, Any], key: str, default: int | None = None) -> int:
    """A non-negative integer (never a bool or a float)."""
    if key not in data and default is None:
        raise ValueError(f"{key}: missing")
    value = data.get(key, default)
    if type(value) is not int or value < 0:
        raise ValueError(f"{key}: must be a non-negative integer, not {_show(value)}")
    return value


_STATUSES = {s.value: s for s in Status}


def _batch_requests(data: dict[str, Any]) -> tuple[BatchRequest, ...] | None:
    """A batched chapter's `batch` (absent: None)."""
    items = _field(data, "batch", list, None)
    if items is None:
        return None
    requests = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValueError(f"must be an object, not {_show(item)}")
            custom_id, key = _field(item, "customId", str), _field(item, "key", str)
            requests.append(BatchRequest(custom_id, key, _field(item, "batch", str)))
        except ValueError as exc:
            raise ValueError(f"batch[{index}]: {exc}") from None
    return tuple(requests)


def _batch_records(data: dict[str, Any]) -> tuple[BatchRecord, ...]:
    records = []
    for index, item in enumerate(_field(data, "batches", list, [])):
        try:
            records.append(BatchRecord.from_json(item))
        except ValueError as exc:
            raise ValueError(f"batches[{index}]: {exc}") from None
    return tuple(records)


# --- owners -------------------------------------------------------------------------------


def owner_id(worker: str, pid: int | None = None, host: str | None = None) -> str:
    return f"{host or socket.gethostname()}:{pid or os.getpid()}:{worker}"


def owner_is_dead(owner: str, this_host: str | None = None) -> bool:
    """True only when the owner provably no longer runs: same host, pid gone.

    An owner on another host can never be proven dead from here; its lease decides.
    """
    host_pid, _, _worker = owner.rpartition(":")
    host, _, pid_text = host_pid.rpartition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if host != (this_host or socket.gethostname()) or pid <= 0:
        return False
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        # OverflowError: a pid beyond pid_t (a corrupt manifest) names no process.
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    # A killed child that its parent has not reaped yet still answers kill(0); it is dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- transitions --------------------------------------------------------------------------

DeadCheck = Callable[[str], bool]


@dataclass(frozen=True)
class Claim:
    number: int
    token: int
    attempt: int
    # Why the chapter was free: "pending", "retry" or the reclaim reason.
    reason: str


# `claimable_reason` of a claim whose heartbeat lies in the judge's future: not claimable, but
# `claim` records its heartbeat as now (see `is_stale`), so the judge must take the lock.
FUTURE_BEAT = "heartbeat in the future"


def _last_beat(entry: Entry) -> float | None:
    return entry.heartbeat_at if entry.heartbeat_at is not None else entry.claimed_at


def beats_ahead(entry: Entry, now: float) -> bool:
    """An in-progress claim whose last heartbeat lies after `now`: written by a clock ahead of
    the judge's (another host's, or this one's before it was set back)."""
    beat = _last_beat(entry)
    return entry.status is Status.IN_PROGRESS and beat is not None and beat > now


def is_stale(entry: Entry, now: float, lease: float, is_dead: DeadCheck) -> str | None:
    """Why an in-progress claim may be taken over, or None while it is live.

    A heartbeat in the future counts as now: it is live. Judged by its own time it would stay
    live until the judge's clock caught up (forever, for an owner that died with its clock
    ahead); so `claim` records such a heartbeat as now, and the lease runs from there."""
    if entry.status is not Status.IN_PROGRESS:
        return None
    if entry.owner and is_dead(entry.owner):
        return f"owner {entry.owner} is no longer running"
    beat = _last_beat(entry)
    if beat is None or now - min(beat, now) > lease:
        return f"no heartbeat from {entry.owner} for over {lease:g}s"
    return None


def retry_pending(entry: Entry, max_attempts: int) -> bool:
    """Failed, but to be tried again (now or once `retry_at` passes): retryable, and with
    attempts left for a claimant allowing `max_attempts`."""
    return entry.status is Status.FAILED and entry.retryable and entry.attempts < max_attempts


def failed_for_good(entry: Entry, max_attempts: int) -> bool:
    """Failed, and no claimant allowing `max_attempts` will try it again (only the user's
    --retry-failed or --force reopens it)."""
    return entry.status is Status.FAILED and not retry_pending(entry, max_attempts)


def claimable_reason(
    entry: Entry, now: float, lease: float, max_attempts: int, is_dead: DeadCheck
) -> str | None:
    if entry.status is Status.PENDING:
        return "pending"
    if entry.status is Status.FAILED:
        ready = entry.retry_at is None or entry.retry_at <= now
        return "retry" if retry_pending(entry, max_attempts) and ready else None
    stale = is_stale(entry, now, lease, is_dead)
    if stale is None and beats_ahead(entry, now):
        return FUTURE_BEAT
    return stale


def claim(
    manifest: Manifest,
    owner: str,
    now: float,
    *,
    lease: float = DEFAULT_LEASE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    is_dead: DeadCheck = owner_is_dead,
    wanted: Iterable[int] | None = None,
) -> tuple[Manifest, Claim | None]:
    """Take the first claimable chapter (in book order, among `wanted`). A claim passed over
    whose heartbeat lies after `now` gets `now` as its heartbeat (see `is_stale`)."""
    allowed = None if wanted is None else set(wanted)
    # Only the entries a claim may ever take, in book order: with most of a long book done,
    # a claim looks at a few entries, not at every completed one before them.
    for position in manifest.open_positions():
        entry = manifest.chapters[position]
        if allowed is not None and entry.number not in allowed:
            continue
        reason = claimable_reason(entry, now, lease, max_attempts, is_dead)
        if reason is None:
            continue
        if reason == FUTURE_BEAT:
            manifest = manifest.with_entry(replace(entry, heartbeat_at=now))
            continue
        if entry.status is Status.IN_PROGRESS and entry.attempts >= max_attempts:
            abandoned = replace(
                entry,
                status=Status.FAILED,
                owner=None,
                error=f"abandoned: its worker stopped {entry.attempts} times ({reason})",
                retryable=False,
                retry_at=None,
            )
            manifest = manifest.with_entry(abandoned)
            continue
        token = manifest.next_token
        taken = replace(
            entry,
            status=Status.IN_PROGRESS,
            owner=owner,
            claimed_at=now,
            heartbeat_at=now,
            attempts=entry.attempts + 1,
            token=token,
            error=entry.error if reason in ("pending", "retry") else f"reclaimed: {reason}",
            retry_at=None,
        )
        manifest = manifest.with_entries((taken,), next_token=token + 1)
        return manifest, Claim(entry.number, token, taken.attempts, reason)
    return manifest, None


def owned(manifest: Manifest, number: int, token: int) -> Entry | None:
    """The entry while claim `token` holds it; None when another claim holds it, it is no
    longer in progress, or it is no longer listed (an image unit whose scene is gone)."""
    try:
        entry = manifest.entry(number)
    except KeyError:
        return None
    return entry if entry.status is Status.IN_PROGRESS and entry.token == token else None


def _fenced(
    manifest: Manifest, number: int, token: int, change: Callable[[Entry], Entry]
) -> tuple[Manifest, bool]:
    """Apply `change` to the entry only while claim `token` holds it: every fenced
    transition (heartbeat, complete, fail, release) goes through here."""
    entry = owned(manifest, number, token)
    if entry is None:
        return manifest, False
    return manifest.with_entry(change(entry)), True


def heartbeat(manifest: Manifest, number: int, token: int, now: float) -> tuple[Manifest, bool]:
    return _fenced(manifest, number, token, lambda e: replace(e, heartbeat_at=now))


def complete(
    manifest: Manifest, number: int, token: int, now: float, tokens: int = 0
) -> tuple[Manifest, bool]:
    return _fenced(manifest, number, token, lambda e: settled_done(e, now, tokens))


def fail(
    manifest: Manifest,
    number: int,
    token: int,
    now: float,
    error: str,
    *,
    retryable: bool = False,
    retry_at: float | None = None,
    spent: tuple[int, int] = (0, 0),
) -> tuple[Manifest, bool]:
    """`spent`: (prompt, completion) tokens the failed attempt used."""
    return _fenced(
        manifest,
        number,
        token,
        lambda e: settled_failed(e, error, retryable=retryable, retry_at=retry_at, spent=spent),
    )


# A settled entry has one shape whoever settles it: a fenced claim here, a batch's replies
# in batch_state.
def settled_done(entry: Entry, now: float, tokens: int) -> Entry:
    return replace(
        entry,
        status=Status.COMPLETED,
        owner=None,
        completed_at=now,
        error=None,
        retryable=False,
        retry_at=None,
        tokens=tokens,
    )


def settled_failed(
    entry: Entry,
    error: str,
    *,
    retryable: bool = False,
    retry_at: float | None = None,
    spent: tuple[int, int] = (0, 0),
) -> Entry:
    return replace(
        entry,
        status=Status.FAILED,
        owner=None,
        error=error,
        retryable=retryable,
        retry_at=retry_at if retryable else None,
        spent_prompt=entry.spent_prompt + spent[0],
        spent_completion=entry.spent_completion + spent[1],
    )


def release(manifest: Manifest, number: int, token: int) -> tuple[Manifest, bool]:
    """Give an unfinished claim back (Ctrl-C): the attempt does not count."""
    return _fenced(
        manifest,
        number,
        token,
        lambda e: replace(e, status=Status.PENDING, owner=None, attempts=max(0, e.attempts - 1)),
    )


def retry_failed(manifest: Manifest, numbers: Iterable[int] | None = None) -> Manifest:
    allowed = None if numbers is None else set(numbers)
    return manifest.with_entries(
        replace(entry, status=Status.PENDING, attempts=0, retryable=False, retry_at=None)
        for entry in manifest.chapters
        if entry.status is Status.FAILED and (allowed is None or entry.number in allowed)
    )


def retry_passing(manifest: Manifest, numbers: Iterable[int]) -> tuple[Manifest, list[int]]:
    """A plain re-run's second chance: chapters among `numbers` that failed for a reason that
    passes (network, timeout, 5xx: `retryable`) are pending again with fresh attempts; those
    that failed for their own reason wait for --retry-failed. Returns which were reopened."""
    allowed = set(numbers)
    reopened = [
        e
        for e in manifest.chapters
        if e.status is Status.FAILED and e.retryable and e.number in allowed
    ]
    updated = manifest.with_entries(
        replace(e, status=Status.PENDING, attempts=0, retryable=False, retry_at=None)
        for e in reopened
    )
    return updated, [e.number for e in reopened]


def force_pending(manifest: Manifest, numbers: Iterable[int]) -> Manifest:
    """The user's --force: finished chapters among `numbers` are to be done again."""
    allowed = set(numbers)
    return manifest.with_entries(
        replace(
            entry,
            status=Status.PENDING,
            attempts=0,
            completed_at=None,
            error=None,
            retryable=False,
            retry_at=None,
            tokens=0,
        )
        for entry in manifest.chapters
        if entry.number in allowed and entry.status in (Status.COMPLETED, Status.FAILED)
    )


def reconcile(
    manifest: Manifest, chapters: Iterable[tuple[int, str]], finished: dict[int, int]
) -> Manifest:
    """Join an existing manifest: add missing chapters; align `completed` with result files.

    `finished` maps chapter numbers that have a result file to the tokens it used.
    """
    known = {e.number for e in manifest.chapters}
    added = tuple(Entry(n, t) for n, t in chapters if n not in known)
    if added:
        ordered = sorted(manifest.chapters + added, key=lambda e: e.number)
        manifest = replace(manifest, chapters=tuple(ordered))
    changed: list[Entry] = []
    for entry in manifest.chapters:
        has_result = entry.number in finished
        if entry.status is Status.COMPLETED and not has_result:
            changed.append(replace(entry, status=Status.PENDING, attempts=0, completed_at=None))
        elif entry.status is not Status.COMPLETED and has_result:
            # A worker killed between publishing its result and recording it: the work is done.
            changed.append(
                replace(
                    entry,
                    status=Status.COMPLETED,
                    owner=None,
                    completed_at=entry.completed_at or manifest.updated_at,
                    error=None,
                    retryable=False,
                    retry_at=None,
                    tokens=finished[entry.number],
                )
            )
    return manifest.with_entries(changed) if changed else manifest


def new_manifest(
    book_path: str, sha256: str, title: str, chapters: Iterable[tuple[int, str]], now: float
) -> Manifest:
    entries = tuple(Entry(n, t) for n, t in chapters)
    return Manifest(book_path, sha256, title, entries, created_at=now, updated_at=now)


def settled(manifest: Manifest, max_attempts: int, wanted: Iterable[int] | None = None) -> bool:
    """Nothing left to do for these chapters: each is completed or failed for good, or
    batched (the batch run that sent it finishes it; a worker has nothing to do there)."""
    allowed = None if wanted is None else set(wanted)
    for position in manifest.open_positions():  # every other entry is settled
        entry = manifest.chapters[position]
        if allowed is not None and entry.number not in allowed:
            continue
        if failed_for_good(entry, max_attempts) or entry.status is Status.BATCHED:
            continue
        return False
    return True
