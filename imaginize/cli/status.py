"""`imaginize status` and `imaginize unlock`: reading the manifest and the lock for people."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imaginize.cli.progress import format_duration
from imaginize.coordination import manifest as mf
from imaginize.coordination.locking import LockHolder, break_lock, lock_holder
from imaginize.coordination.store import ManifestStore
from imaginize.errors import ManifestError
from imaginize.guides.images import ImageStore
from imaginize.safetext import for_terminal, mask_secrets, one_line


@dataclass(frozen=True)
class StatusReport:
    manifest: mf.Manifest
    lock: LockHolder | None
    now: float
    # The image units' manifest, when --images was used on this book.
    images: mf.Manifest | None = None
    # Who holds the image manifest's lock (`.imaginize.images.lock`), when someone does.
    image_lock: LockHolder | None = None


def _lock_paths(out_dir: Path) -> list[Path]:
    """The chapters' lock and the images' lock: each store coordinates through its own."""
    return [ManifestStore(out_dir).lock_path, ImageStore(out_dir).lock_path]


def status_report(out_dir: Path, now: float | None = None) -> StatusReport:
    store = ManifestStore(out_dir)
    current = store.read()
    if current is None:
        raise ManifestError(f"{store.path}: no manifest (has this book been run yet?)")
    now = time.time() if now is None else now
    image_store = ImageStore(out_dir)
    images = image_store.read()
    return StatusReport(
        current,
        lock_holder(store.lock_path, now),
        now,
        images,
        lock_holder(image_store.lock_path, now),
    )


def render_status(report: StatusReport, *, as_json: bool = False) -> str:
    """The report as a table, or as JSON. Titles, owners, hosts and errors come from the book,
    other hosts and servers: shown on one line each with controls escaped, and with API keys
    masked in both forms (JSON escapes the controls itself)."""
    m = report.manifest
    totals = _totals(m)
    if as_json:
        data = m.to_json()
        data["totals"] = {s.value: totals.get(s.value, 0) for s in mf.Status}
        data["tokensUsed"] = sum(e.tokens for e in m.chapters)
        data["lock"] = None if report.lock is None else vars(report.lock)
        data["imageLock"] = None if report.image_lock is None else vars(report.image_lock)
        if report.images is not None:
            data["images"] = {s.value: _totals(report.images).get(s.value, 0) for s in mf.Status}
        return mask_secrets(json.dumps(data, indent=2))
    header = ("#", "title", "status", "owner", "tries", "age", "error")
    rows = [header]
    for e in m.chapters:
        since = e.heartbeat_at if e.status is mf.Status.IN_PROGRESS else e.completed_at
        age = format_duration(report.now - since) if since else ""
        title = one_line(e.title)
        title = title if len(title) <= 40 else title[:39] + "…"
        error = one_line(e.error or "")[:60]
        owner = one_line(e.owner or "")
        rows.append((str(e.number), title, e.status.value, owner, str(e.attempts), age, error))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    summary = ", ".join(f"{totals.get(s.value, 0)} {s.value}" for s in mf.Status)
    lines += ["", f"{one_line(m.title)}: {len(m.chapters)} chapters: {summary}"]
    lines.append(f"tokens used: {sum(e.tokens for e in m.chapters):,}")
    if report.images is not None:
        counts = _totals(report.images)
        shown = ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in mf.Status)
        lines.append(f"images: {len(report.images.chapters)} scenes: {shown}")
        lines += [
            f"  {one_line(e.title)}: {one_line(e.error)}"
            for e in report.images.chapters
            if e.status is mf.Status.FAILED and e.error
        ]
    if report.lock is not None:
        lines.append(f"lock: {one_line(report.lock.describe())}")
    if report.image_lock is not None:
        lines.append(f"image lock: {one_line(report.image_lock.describe())}")
    return for_terminal("\n".join(lines))


def _totals(manifest: mf.Manifest) -> Counter[str]:
    return Counter(e.status.value for e in manifest.chapters)


def break_stuck_lock(out_dir: Path, confirm: Callable[[str], bool]) -> str:
    """Offer to remove each held lock of the book's folder (the chapters' and the images');
    `confirm` gets the lock file's name and its holder. One line per lock says what became
    of it."""
    lines = []
    for path in _lock_paths(Path(out_dir)):
        holder = lock_holder(path)
        if holder is None:
            lines.append(f"{path}: not locked")
        elif not confirm(one_line(f"{path.name}, {holder.describe()}")):
            lines.append(f"{path}: left in place")
        else:
            lines.append(f"{path}: removed" if break_lock(path) else f"{path}: already gone")
    return for_terminal("\n".join(lines))
