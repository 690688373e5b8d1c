"""The manifest's transitions for --batch-api (see manifest-format.md, "Batches").

Pure functions `Manifest -> (Manifest, outcome)`, applied under the lock like those of
`manifest.py`. What they guarantee:

- a chapter is put in a batch only from `pending` (or failed and due for a retry), or from
  `batched` by the holder of its token; each time it takes a new token, so of two processes
  that planned the same chapter only the first one's requests are recorded, and the second
  leaves them out of its file: no chapter is submitted twice;
- its requests are recorded (with the `ref` of their batch file) before the file is
  uploaded; the file's upload and the batch's id are recorded as soon as each is known;
- a batched chapter leaves `batched` only by its token: completed, failed, or back to
  pending (its batches cancelled, or rejected for the enqueued-token cap); a pending one
  whose replies are all on file already is completed or failed by the token it had.

Not guaranteed: that a batch created by a process killed before recording its id is found
again; `batch_run` looks for it on the server by its `ref` (the batch's metadata).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from imaginize.coordination import manifest as mf

# Server states after which a batch changes no more.
ENDED = ("completed", "failed", "expired", "cancelled")


def can_batch(entry: mf.Entry, now: float, max_attempts: int) -> bool:
    """Whether a chapter may be planned into a batch: pending, or failed and due again."""
    if entry.status is mf.Status.PENDING:
        return True
    ready = entry.retry_at is None or entry.retry_at <= now
    return mf.retry_pending(entry, max_attempts) and ready


def submit(
    manifest: mf.Manifest,
    planned: Mapping[int, tuple[int, tuple[mf.BatchRequest, ...]]],
    records: Iterable[mf.BatchRecord],
    now: float,
    max_attempts: int,
) -> tuple[mf.Manifest, list[int]]:
    """Record chapters as batched with their requests, and the batch files they go in.

    `planned`: chapter -> (the token it had when planned, its requests). A chapter is taken
    only if it is still as planned (same token, and pending or due, or batched); the
    records' request counts are those of the chapters taken. Returns the chapters taken."""
    taken: list[mf.Entry] = []
    token = manifest.next_token
    for number, (seen, requests) in planned.items():
        entry = manifest.entry(number)
        if entry.token != seen:
            continue
        if entry.status is not mf.Status.BATCHED and not can_batch(entry, now, max_attempts):
            continue
        taken.append(
            replace(
                entry,
                status=mf.Status.BATCHED,
                owner=None,
                claimed_at=now,
                heartbeat_at=None,
                attempts=entry.attempts + 1,
                token=token,
                retry_at=None,
                batch=requests,
            )
        )
        token += 1
    counts: dict[str, int] = {}
    for entry in taken:
        for request in entry.batch or ():
            counts[request.batch] = counts.get(request.batch, 0) + 1
    added = tuple(replace(r, requests=counts[r.ref]) for r in records if counts.get(r.ref))
    updated = manifest.with_entries(taken, next_token=token, updated_at=now)
    if added:
        updated = replace(updated, batches=updated.batches + added)
    return updated, [e.number for e in taken]


def update_record(manifest: mf.Manifest, ref: str, **changes: object) -> mf.Manifest:
    """The batch file `ref` with `changes` (fields of BatchRecord)."""
    records = tuple(replace(r, **changes) if r.ref == ref else r for r in manifest.batches)  # type: ignore[arg-type]
    return manifest if records == manifest.batches else replace(manifest, batches=records)


def record(manifest: mf.Manifest, ref: str) -> mf.BatchRecord | None:
    return next((r for r in manifest.batches if r.ref == ref), None)


def open_records(manifest: mf.Manifest) -> list[mf.BatchRecord]:
    """Batch files not yet ingested: unsent, running on the server, or ended."""
    return [r for r in manifest.batches if not r.ingested]


def ready(manifest: mf.Manifest, wanted: Iterable[int] | None = None) -> list[mf.Entry]:
    """Batched chapters all of whose batch files are ingested: their replies (or their
    lack) are known, and they can be played again."""
    done = {r.ref for r in manifest.batches if r.ingested}
    allowed = None if wanted is None else set(wanted)
    return [
        e
        for e in manifest.chapters
        if e.status is mf.Status.BATCHED
        and (allowed is None or e.number in allowed)
        and all(q.batch in done for q in e.batch or ())
    ]


def _played(manifest: mf.Manifest, number: int, token: int) -> mf.Entry | None:
    """The entry, while it is as it was when played: batched, or pending or failed (all its
    replies were on file already), with the same token (a claim or a batch takes a new one)."""
    entry = manifest.entry(number)
    if entry.token != token or entry.status in (mf.Status.IN_PROGRESS, mf.Status.COMPLETED):
        return None
    return entry


def complete(
    manifest: mf.Manifest, number: int, token: int, now: float, tokens: int
) -> tuple[mf.Manifest, bool]:
    entry = _played(manifest, number, token)
    if entry is None:
        return manifest, False
    return manifest.with_entry(replace(mf.settled_done(entry, now, tokens), batch=None)), True


def fail(
    manifest: mf.Manifest, number: int, token: int, error: str, spent: tuple[int, int]
) -> tuple[mf.Manifest, bool]:
    entry = _played(manifest, number, token)
    if entry is None:
        return manifest, False
    failed = mf.settled_failed(entry, error, spent=spent)
    return manifest.with_entry(replace(failed, batch=None)), True


def give_back(
    manifest: mf.Manifest, refs: Iterable[str], reason: str | None = None
) -> tuple[mf.Manifest, list[int]]:
    """Batched chapters with a request in any of `refs` back to pending, their attempt not
    counted (their batch was cancelled, or refused for the token cap: not their fault)."""
    gone = set(refs)
    back = [
        replace(
            e,
            status=mf.Status.PENDING,
            attempts=max(0, e.attempts - 1),
            error=reason or e.error,
            batch=None,
        )
        for e in manifest.chapters
        if e.status is mf.Status.BATCHED and any(q.batch in gone for q in e.batch or ())
    ]
    return manifest.with_entries(back), [e.number for e in back]
